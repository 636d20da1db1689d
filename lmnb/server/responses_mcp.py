"""``{"type": "mcp"}`` tools in ``/v1/responses``: the tools of MCP servers connected in the kernel,
run by the server, with OpenAI's approval flow.

A request names a server by ``server_label`` (``%lm mcp add NAME …`` connected it; URLs in a
request are never fetched). ``require_approval`` is honoured as OpenAI defines it: unless it is
``"never"`` (or names the tool under ``never``), a call the model makes is not run but returned as
an ``mcp_approval_request`` item; the client answers in its next request's input with an
``mcp_approval_response`` (``approve`` true or false), and the server runs the call (or tells the
model it was declined) before generating. Earlier ``mcp_call`` items in the input go back to the
model as calls and their results.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from .errors import APIError

__all__ = ["McpTool", "mcp_tools_of", "call_item", "call_message", "approval_item", "InputApprovals"]


@dataclass(frozen=True)
class McpTool:
    label: str  # the server's label
    tool: Any  # lmnb.tools.Tool
    approval: bool  # a call needs the client's approval first


def _needs_approval(require: Any, name: str) -> bool:
    """OpenAI's ``require_approval``: "always" (the default), "never", or per tool name."""
    if require == "never":
        return False
    if isinstance(require, dict):
        never = (require.get("never") or {}).get("tool_names") or []
        return name not in never
    return True


def mcp_tools_of(spec: dict, i: int) -> list[McpTool]:
    """The tools of the connected server that ``spec`` (an ``mcp`` tool of the request) names."""
    from ..errors import LmnbError
    from ..tools.mcp import tools_of

    label = str(spec.get("server_label") or "")
    try:
        found = tools_of([label])
    except (LmnbError, ImportError) as e:
        raise APIError(400, f"tools[{i}]: {e}. The server runs only MCP servers connected in the kernel "
                            "(%lm mcp add), named by server_label.", param=f"tools.{i}") from None  # fmt: skip
    allowed = spec.get("allowed_tools")
    if isinstance(allowed, dict):  # {"tool_names": [...]}
        allowed = allowed.get("tool_names")
    require = spec.get("require_approval", "always")
    return [McpTool(label, t, _needs_approval(require, t.name)) for t in found if not allowed or t.name in allowed]


async def call_item(tool: McpTool, name: str, arguments: str, item_id: Optional[str] = None) -> dict:
    """Run one call (off the event loop) and return its ``mcp_call`` item; an error is reported, not raised."""
    item = {"type": "mcp_call", "id": item_id or f"mcp_{uuid.uuid4().hex}", "server_label": tool.label, "name": name,
            "arguments": arguments, "output": None, "error": None}  # fmt: skip
    try:
        item["output"] = await asyncio.to_thread(tool.tool.call, arguments)
    except Exception as e:  # the model is told, and so is the client
        item["error"] = str(e)
    return item


def approval_item(tool: McpTool, name: str, arguments: str) -> dict:
    return {"type": "mcp_approval_request", "id": f"mcpr_{uuid.uuid4().hex}", "server_label": tool.label,
            "name": name, "arguments": arguments}  # fmt: skip


def item_result(item: dict) -> str:
    """What the model reads as an ``mcp_call`` item's result."""
    return item.get("output") or f"Error: {item.get('error') or 'no output'}"


class InputApprovals:
    """The input's approval requests and the client's answers, turned into calls and results.

    ``read`` takes the input items of these kinds as ``messages_of`` meets them and appends the
    messages; an approved call's result message is filled by ``run`` before the generation.
    """

    def __init__(self) -> None:
        self.requests: dict[str, dict] = {}
        self.pending: list[tuple[dict, dict]] = []  # (approval request, the tool message to fill)

    def read(self, item: dict, out: list[dict], where: str) -> None:
        kind = item.get("type")
        if kind == "mcp_list_tools":
            return  # what a server listed: the request's tools say it again
        if kind == "mcp_call":
            call_message(out, item.get("id", ""), item.get("name", ""), item.get("arguments") or "{}")
            out.append({"role": "tool", "tool_call_id": item.get("id", ""), "content": item_result(item)})
        elif kind == "mcp_approval_request":
            self.requests[str(item.get("id"))] = item
        elif kind == "mcp_approval_response":
            request = self.requests.get(str(item.get("approval_request_id")))
            if request is None:
                raise APIError(400, f"{where}: approval_request_id names no mcp_approval_request earlier in input.",
                               param=f"{where}.approval_request_id")  # fmt: skip
            call_message(out, request["id"], request.get("name", ""), request.get("arguments") or "{}")
            result = {"role": "tool", "tool_call_id": request["id"], "content": "The user declined to run this call."}
            out.append(result)
            if item.get("approve") is True:
                self.pending.append((request, result))

    async def run(self, tools: dict[str, McpTool]) -> list[dict]:
        """Run the approved calls; their ``mcp_call`` items, for the response's output."""
        items = []
        for request, message in self.pending:
            tool = tools.get(request.get("name", ""))
            if tool is None or tool.label != request.get("server_label"):
                raise APIError(400, f"the approved call {request.get('name')!r} is not among this request's mcp tools.",
                               param="tools")  # fmt: skip
            item = await call_item(tool, request["name"], request.get("arguments") or "{}")
            message["content"] = item_result(item)
            items.append(item)
        return items


def call_message(out: list[dict], call_id: str, name: str, arguments: str) -> None:
    """Append a call to ``out``: to the assistant turn just before it (parallel calls), else in a new one."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls") is not None:
        out[-1]["tool_calls"].append(call)
    else:
        out.append({"role": "assistant", "content": "", "tool_calls": [call]})
