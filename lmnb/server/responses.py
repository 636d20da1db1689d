"""OpenAI's Responses API (``POST /v1/responses``), stateless: what the OpenAI Agents SDK and
Codex-style clients send by default.

Input items (messages, ``function_call`` and ``function_call_output``) become chat messages,
function tools become ``lmnb.tools`` tools, and the reply comes back as output items: the
thinking of a reasoning model (``reasoning``), the answer (``message`` with ``output_text``) and
the calls (``function_call``). ``stream=true`` sends the Responses event stream
(``response.created`` … ``response.output_text.delta`` … ``response.completed``). Nothing is
stored: ``previous_response_id`` and ``store=true`` are refused with a clear message.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator, Literal, Optional, Union

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..engine import Request as EngineRequest
from ..tools.stream import CallDelta
from ..types import Completion, ModelInfo, ToolCall
from . import convert, schemas as S
from .errors import ERROR_DOCS, APIError, as_api_error, cancelled_in_kernel, error_body
from .generate import chat_specs, submit_all
from .models import choose
from .responses_mcp import InputApprovals, McpTool, approval_item, call_item, call_message, item_result, mcp_tools_of
from .routes import authenticate
from .streaming import collect, until_disconnect

responses_routes = APIRouter(dependencies=[Depends(authenticate)], responses=ERROR_DOCS)


# ---- the request -----------------------------------------------------------------------------
class _Loose(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextFormat(_Loose):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: Optional[str] = None
    schema_: Optional[dict[str, Any]] = Field(None, alias="schema")
    strict: Optional[bool] = None


class TextOptions(_Loose):
    format: Optional[TextFormat] = None


class ResponsesRequest(S.SamplingRequest):
    """The fields lmnb reads; others (``include``, ``metadata``, ``truncation``…) are accepted and ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")
    input: Union[str, list[dict[str, Any]]]
    instructions: Optional[str] = None
    tools: Optional[list[dict[str, Any]]] = Field(None, max_length=128)
    tool_choice: Optional[Union[Literal["none", "auto", "required"], dict[str, Any]]] = None
    parallel_tool_calls: Optional[bool] = None
    max_output_tokens: Optional[int] = Field(None, ge=1)
    text: Optional[TextOptions] = None
    previous_response_id: Optional[str] = None
    store: Optional[bool] = None
    metadata: Optional[dict[str, Any]] = None


ResponsesRequest.model_rebuild(_types_namespace={"StreamOptions": S.StreamOptions})


def _text_of(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "output_text", "text"):
                parts.append(str(part.get("text", "")))
            elif kind == "refusal":
                parts.append(str(part.get("refusal", "")))
            else:
                raise APIError(400, f"{where}.content[{i}]: parts of type {kind!r} are not supported (this model reads "
                                    "text only).", param=f"{where}.content")  # fmt: skip
        return "".join(parts)
    raise APIError(400, f"{where}.content must be a string or a list of parts.", param=f"{where}.content")


def messages_of(body: ResponsesRequest, approvals: Optional[InputApprovals] = None) -> list[dict]:
    """The chat messages of the request's ``instructions`` and ``input`` items (``approvals``
    reads the MCP items: ``responses_mcp.InputApprovals``)."""
    approvals = approvals if approvals is not None else InputApprovals()
    out: list[dict] = [{"role": "system", "content": body.instructions}] if body.instructions else []
    items = [{"role": "user", "content": body.input}] if isinstance(body.input, str) else body.input
    if not items:
        raise APIError(400, "input must not be empty.", param="input")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message" or (kind is None and "role" in item):
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise APIError(400, f"{where}: unknown role {role!r}.", param=f"{where}.role")
            out.append({"role": "system" if role == "developer" else role, "content": _text_of(item.get("content"), where)})
        elif kind == "function_call":
            call_message(out, item.get("call_id") or item.get("id") or "", item.get("name", ""),
                         item.get("arguments") or "{}")  # fmt: skip
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output, where) if isinstance(output, list) else json.dumps(output)
            out.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": text})
        elif kind in ("reasoning", "item_reference"):
            continue  # earlier thinking is not sent back to the model; references need storage
        elif kind in ("mcp_call", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response"):
            approvals.read(item, out, where)
        else:
            raise APIError(400, f"{where}: items of type {kind!r} are not supported.", param=f"{where}.type")
    return out


def tools_of(body: ResponsesRequest) -> tuple[list, dict[str, McpTool]]:
    """The request's tools, and those of them run here: ``{name: McpTool}`` of its ``mcp`` tools
    (servers connected in the kernel; URLs are not fetched from a request)."""
    from ..tools import Tool

    out, run_here = [], {}
    for i, spec in enumerate(body.tools or ()):
        if isinstance(spec, dict) and spec.get("type") == "mcp":
            for found in mcp_tools_of(spec, i):
                out.append(found.tool)
                run_here[found.tool.name] = found
            continue
        try:
            out.append(Tool.from_openai(spec))
        except ValueError as e:
            raise APIError(400, f"tools[{i}]: {e} (lmnb runs function and mcp tools)", param=f"tools.{i}") from None
    if len({t.name for t in out}) < len(out):
        raise APIError(400, "Two tools have the same name.", param="tools")
    return out, run_here


def _grammar(body: ResponsesRequest) -> Optional[str]:
    fmt = body.text.format if body.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return convert.grammar(S.ResponseFormatJSONObject(type="json_object"))
    return convert.grammar(S.ResponseFormatJSONSchema(
        type="json_schema", json_schema=S.JSONSchemaSpec(name=fmt.name or "response", schema=fmt.schema_ or {})))


# ---- the reply -------------------------------------------------------------------------------
class _Shape:
    """The ids and echoed settings of one response."""

    def __init__(self, body: ResponsesRequest, info: ModelInfo) -> None:
        self.id = f"resp_{uuid.uuid4().hex}"
        self.msg_id = f"msg_{uuid.uuid4().hex}"
        self.rs_id = f"rs_{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.body, self.info = body, info
        self.streamed: dict[str, int] = {}  # the items the stream opened, and where (reasoning, message, calls)
        self.call_ids: dict[str, str] = {}

    def response(self, status: str, output: list[dict], res: Optional[Completion] = None) -> dict:
        b = self.body
        incomplete = {"reason": "max_output_tokens"} if res is not None and res.finish_reason == "length" else None
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.info.name, "output": output, "error": None, "incomplete_details": incomplete,
            "instructions": b.instructions, "max_output_tokens": b.max_output_tokens,
            "parallel_tool_calls": b.parallel_tool_calls is not False, "previous_response_id": None,
            "temperature": b.temperature, "top_p": b.top_p, "tool_choice": b.tool_choice or "auto",
            "tools": b.tools or [], "text": {"format": {"type": "text"}}, "truncation": "disabled",
            "metadata": b.metadata or {}, "store": False, "usage": _usage(res) if res is not None else None,
        }

    def message(self, text: str, status: str = "completed") -> dict:
        return {"type": "message", "id": self.msg_id, "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}

    def reasoning(self, text: str) -> dict:
        return {"type": "reasoning", "id": self.rs_id, "summary": [],
                "content": [{"type": "reasoning_text", "text": text}]}

    def call(self, call: Any, status: str = "completed") -> dict:
        return {"type": "function_call", "id": f"fc_{call.id.removeprefix('call_')}", "call_id": call.id,
                "name": call.name, "arguments": call.arguments, "status": status}

    def output(self, res: Completion) -> list[dict]:
        out = [self.reasoning(res.reasoning)] if res.reasoning else []
        if res.text or not res.tool_calls or "message" in self.streamed:
            out.append(self.message(res.text, "incomplete" if res.finish_reason == "length" else "completed"))
        out += [self.call(c) for c in res.tool_calls or ()]
        return out


def _usage(res: Completion) -> dict:
    u = res.usage
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.total_tokens,
            **({"dropped_messages": res.dropped_messages} if res.dropped_messages else {})}  # see convert.usage


@responses_routes.post("/responses", responses={200: {"content": {"text/event-stream": {}},
                                                      "description": "A response, or its event stream"}})
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    """A model response to ``input`` (OpenAI's Responses API, without storage).

    ``{"type": "mcp", "server_label": NAME}`` tools are the tools of the MCP server ``NAME``
    connected in the kernel (``%lm mcp add``); their calls run here, up to ``MAX_MCP_STEPS``
    rounds, and come back as ``mcp_call`` items before the answer, or as ``mcp_approval_request``
    items when ``require_approval`` asks for it (``responses_mcp``). With ``stream``, a request
    with mcp tools streams its events once the response is complete."""
    if body.previous_response_id:
        raise APIError(400, "previous_response_id needs stored responses, which lmnb does not keep: send the whole "
                            "conversation in input.", param="previous_response_id")  # fmt: skip
    engine, info, key = await choose(request, body.model)
    approvals = InputApprovals()
    messages = messages_of(body, approvals)
    tools, mcp_tools = tools_of(body)
    shape = _Shape(body, info)
    if not mcp_tools:
        if approvals.pending:
            raise APIError(400, "an approved mcp call needs its server among the request's tools.", param="tools")
        req = _submit(engine, key, body, info, messages, tools, body.tool_choice)
        request.app.state.requests.add(req)
        if body.stream:
            return await _stream(req, request, shape)
        res = await collect(req, request, "input")
        return JSONResponse(shape.response("incomplete" if res.finish_reason == "length" else "completed",
                                           shape.output(res), res))  # fmt: skip
    mcp_items = await approvals.run(mcp_tools)
    choice = body.tool_choice if not mcp_items else None  # a forced call was made: it is not forced again
    for _ in range(MAX_MCP_STEPS):
        req = _submit(engine, key, body, info, messages, tools, choice)
        request.app.state.requests.add(req)
        res = await collect(req, request, "input")
        calls = res.tool_calls or []
        if not calls or any(c.name not in mcp_tools for c in calls):
            break
        if any(mcp_tools[c.name].approval for c in calls):  # the client decides; nothing runs meanwhile
            mcp_items += [approval_item(mcp_tools[c.name], c.name, c.arguments) for c in calls]
            res.text, res.tool_calls = "", None
            break
        turn: list[dict] = [{"role": "assistant", "content": res.text, "tool_calls": [c.openai() for c in calls]}]
        for c in calls:
            item = await call_item(mcp_tools[c.name], c.name, c.arguments)
            mcp_items.append(item)
            turn.append({"role": "tool", "tool_call_id": c.id, "content": item_result(item)})
        messages = messages + turn
        choice = None  # a forced first call is not forced again
    output = mcp_items + (shape.output(res) if res.text or res.tool_calls or not mcp_items else [])
    done = shape.response("incomplete" if res.finish_reason == "length" else "completed", output, res)
    return _replay(done) if body.stream else JSONResponse(done)


MAX_MCP_STEPS = 5  # rounds of server-run MCP calls before the reply is returned as it is


def _submit(engine: Any, key: Optional[str], body: ResponsesRequest, info: ModelInfo, messages: list[dict],
            tools: list, choice: Any) -> EngineRequest:  # fmt: skip
    """One generation for ``messages`` with ``tools`` (planned for this model)."""
    params = convert.sampling(body, body.max_output_tokens or body.max_tokens)
    specs, stages = chat_specs(messages, tools, choice, body.parallel_tool_calls, info, [params], grammar=_grammar(body))
    [req] = submit_all(engine, key, specs, stages=stages)
    return req


# ---- streaming -------------------------------------------------------------------------------
def _replay(done: dict) -> Response:
    """The event stream of a response that is already complete (one whose mcp calls ran here)."""
    from sse_starlette.sse import EventSourceResponse

    seq = iter(range(1 << 30))

    def event(kind: str, **data: Any) -> dict:
        return {"event": kind, "data": json.dumps({"type": kind, "sequence_number": next(seq), **data})}

    async def events() -> AsyncIterator[dict]:
        start = {**done, "status": "in_progress", "output": [], "usage": None}
        yield event("response.created", response=start)
        yield event("response.in_progress", response=start)
        for i, item in enumerate(done["output"]):
            kind, item_id = item["type"], item["id"]
            if kind == "message":
                text = item["content"][0]["text"]
                yield event("response.output_item.added", output_index=i, item={**item, "status": "in_progress", "content": []})
                yield event("response.content_part.added", item_id=item_id, output_index=i, content_index=0,
                            part={"type": "output_text", "text": "", "annotations": []})  # fmt: skip
                yield event("response.output_text.delta", item_id=item_id, output_index=i, content_index=0, delta=text,
                            logprobs=[])  # fmt: skip
                yield event("response.output_text.done", item_id=item_id, output_index=i, content_index=0, text=text,
                            logprobs=[])  # fmt: skip
                yield event("response.content_part.done", item_id=item_id, output_index=i, content_index=0,
                            part=item["content"][0])  # fmt: skip
            elif kind == "function_call":
                yield event("response.output_item.added", output_index=i, item={**item, "arguments": "", "status": "in_progress"})
                yield event("response.function_call_arguments.delta", item_id=item_id, output_index=i, delta=item["arguments"])
                yield event("response.function_call_arguments.done", item_id=item_id, output_index=i, arguments=item["arguments"])
            elif kind == "mcp_call":
                yield event("response.output_item.added", output_index=i, item={**item, "output": None, "error": None})
                yield event("response.mcp_call.in_progress", item_id=item_id, output_index=i)
                yield event("response.mcp_call_arguments.done", item_id=item_id, output_index=i, arguments=item["arguments"])
                yield event("response.mcp_call.failed" if item["error"] else "response.mcp_call.completed", item_id=item_id,
                            output_index=i)  # fmt: skip
            else:
                yield event("response.output_item.added", output_index=i, item=item)
            yield event("response.output_item.done", output_index=i, item=item)
        yield event(f"response.{done['status']}", response=done)

    return EventSourceResponse(events(), sep="\n", ping=15)


async def _stream(req: EngineRequest, request: Request, shape: _Shape) -> Response:
    from sse_starlette.sse import EventSourceResponse

    it = req.aevents()
    try:  # the first event before answering, so an early error is a plain HTTP error
        first: Optional[tuple[str, object]] = await until_disconnect(request, req, it.__anext__())
    except StopAsyncIteration:
        first = None
    except BaseException as e:
        req.cancel()
        raise as_api_error(e, "input") from None

    async def events() -> AsyncIterator[dict]:
        seq = 0

        def event(kind: str, **data: Any) -> dict:
            nonlocal seq
            seq += 1
            return {"event": kind, "data": json.dumps({"type": kind, "sequence_number": seq - 1, **data})}

        try:
            yield event("response.created", response=shape.response("in_progress", []))
            yield event("response.in_progress", response=shape.response("in_progress", []))
            async for e in _text_events(req, shape, first, it, event):
                yield e
            res = req.result()
            if res.finish_reason == "cancelled":
                raise cancelled_in_kernel()
            for e in _closing_events(res, shape, event):
                yield e
        except BaseException as e:
            if isinstance(e, Exception):
                err = as_api_error(e)
                yield {"event": "error", "data": json.dumps({"type": "error", **error_body(err.status, err.message,
                                                                                              err.param, err.code)["error"]})}
            else:
                raise
        finally:
            req.cancel()

    return EventSourceResponse(events(), sep="\n", ping=15)


async def _text_events(req: EngineRequest, shape: _Shape, first, it, event) -> AsyncIterator[dict]:
    """The reasoning item, the message item and the function calls, as they are written."""
    at: dict[str, int] = {}  # output index of each item opened: "reasoning", "message", "call N"

    def open_item(key: str, item: dict) -> list[dict]:
        at[key] = len(at)
        out = [event("response.output_item.added", output_index=at[key], item=item)]
        if key == "message":
            out.append(event("response.content_part.added", item_id=shape.msg_id, output_index=at[key],
                             content_index=0, part={"type": "output_text", "text": "", "annotations": []}))  # fmt: skip
        return out

    async def stream_of() -> AsyncIterator[tuple[str, object]]:
        if first is not None:
            yield first
        async for e in it:
            yield e

    async for kind, payload in stream_of():
        if kind == "reasoning" and payload:
            if "reasoning" not in at:
                for e in open_item("reasoning", shape.reasoning("")):
                    yield e
            yield event("response.reasoning_text.delta", item_id=shape.rs_id, output_index=at["reasoning"],
                        content_index=0, delta=payload)  # fmt: skip
        elif kind == "delta" and payload:
            if "message" not in at:
                for e in open_item("message", {**shape.message("", "in_progress"), "content": []}):
                    yield e
            yield event("response.output_text.delta", item_id=shape.msg_id, output_index=at["message"],
                        content_index=0, delta=payload, logprobs=[])  # fmt: skip
        elif kind == "tool_call":
            piece: CallDelta = payload  # type: ignore[assignment]
            key = f"call {piece.index}"
            if piece.id is not None:
                item = shape.call(ToolCall(piece.id, piece.name or "", ""), status="in_progress")
                for e in open_item(key, item):
                    yield e
                shape.call_ids[key] = item["id"]
            if piece.arguments and key in at:
                yield event("response.function_call_arguments.delta", item_id=shape.call_ids[key],
                            output_index=at[key], delta=piece.arguments)  # fmt: skip
    shape.streamed = at


def _closing_events(res: Completion, shape: _Shape, event) -> list[dict]:
    """Each output item done (those not streamed added whole first), then ``response.completed``."""
    out, output = [], shape.output(res)
    streamed = shape.streamed
    calls = 0
    for i, item in enumerate(output):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            if "message" not in streamed:
                out.append(event("response.output_item.added", output_index=i,
                                 item={**shape.message("", "in_progress"), "content": []}))  # fmt: skip
                out.append(event("response.content_part.added", item_id=shape.msg_id, output_index=i, content_index=0,
                                 part={"type": "output_text", "text": "", "annotations": []}))  # fmt: skip
            out.append(event("response.output_text.done", item_id=shape.msg_id, output_index=i, content_index=0,
                             text=text, logprobs=[]))  # fmt: skip
            out.append(event("response.content_part.done", item_id=shape.msg_id, output_index=i, content_index=0,
                             part=item["content"][0]))  # fmt: skip
        elif item["type"] == "function_call":
            if f"call {calls}" not in streamed:
                out.append(event("response.output_item.added", output_index=i,
                                 item={**item, "arguments": "", "status": "in_progress"}))  # fmt: skip
                out.append(event("response.function_call_arguments.delta", item_id=item["id"], output_index=i,
                                 delta=item["arguments"]))  # fmt: skip
            calls += 1
            out.append(event("response.function_call_arguments.done", item_id=item["id"], output_index=i,
                             arguments=item["arguments"]))  # fmt: skip
        out.append(event("response.output_item.done", output_index=i, item=item))
    status = "incomplete" if res.finish_reason == "length" else "completed"
    out.append(event(f"response.{status}", response=shape.response(status, output, res)))
    return out
