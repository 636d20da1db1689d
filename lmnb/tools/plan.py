"""A chat request with tools, made ready for one model: the prompt, the grammar, and reading the reply.

``plan(messages, tools, template, tool_choice=...)`` decides, from the model's chat template:

- *native* templates (they render ``tools``): the tools go to the template; assistant
  ``tool_calls`` and ``role: "tool"`` messages are passed in the shape templates expect
  (arguments as objects); the reply is read with the family's parser (``formats``).
- the *fallback* (templates without tools, as the bundled SmolLM2 and Gemma 3): the tools are
  described in the system prompt, calls are written ``<tool_call>{...}</tool_call>`` and results
  come back as ``<tool_response>`` in a user turn; a grammar lets the reply be either text or
  well-formed calls.
- ``tool_choice`` ``required`` or a named tool: a grammar makes the reply one or more calls (to
  that tool), arguments valid against its schema. ``none``: no plan; the tools are left out.

The plan's ``stage()`` is an output stage (``lmnb.engine.Stage``): it streams the text before a
call, holds back what may start one, streams each call's arguments as they are written
(``lmnb.tools.stream``), and sets ``Completion.tool_calls`` (``finish_reason``
``"tool_calls"``) from the finished reply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

from ..engine.request import Event, Stage
from ..engine.sequence import partial_suffix
from ..types import Completion, ToolCall
from .formats import JSON_HEADS, CallFormat, detect, parse_json_calls
from .grammar import calls_grammar
from .spec import Tool
from .stream import CallReader

__all__ = ["ToolPlan", "plan", "choice_of", "history_messages", "FALLBACK_TAGS"]

FALLBACK_TAGS = ("<tool_call>", "</tool_call>")

_FALLBACK_PROMPT = """You can call tools (functions) to get information or act. The tools, one JSON Schema per line:
<tools>
{tools}
</tools>

{rule} To call a tool, write only:
<tool_call>
{{"name": "<the tool's name>", "arguments": <its arguments, a JSON object>}}
</tool_call>
You may write several calls, one after another. Each result comes back inside <tool_response></tool_response>."""

_RULES = {
    "auto": "When a tool helps, call it; otherwise answer the user directly, in plain text.",
    "required": "Answer by calling one or more of the tools.",
}


def choice_of(tool_choice: Union[None, str, dict], tools: Sequence[Tool]) -> str:
    """``"auto"``, ``"none"``, ``"required"`` or the name of the one tool to call.

    Takes OpenAI's shapes: a string, ``{"type": "function", "function": {"name": ...}}`` (Chat
    Completions) or ``{"type": "function", "name": ...}`` (Responses).

    Raises:
        ValueError: an unknown value, or a tool name that is not among ``tools``.
    """
    if tool_choice is None:
        return "auto"
    if isinstance(tool_choice, str):
        if tool_choice in ("auto", "none", "required"):
            return tool_choice
        raise ValueError(f"tool_choice must be 'auto', 'none', 'required' or a function, not {tool_choice!r}")
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        fn = tool_choice.get("function", tool_choice)
        name = fn.get("name") if isinstance(fn, dict) else None
        if name not in {t.name for t in tools}:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
        return name
    raise ValueError("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}")


@dataclass
class ToolPlan:
    """What a request with tools sends to the engine, and how its reply is read."""

    format: CallFormat
    tools: list[Tool]
    choice: str  # "auto", "required" or a tool's name
    parallel: bool
    messages: list[dict]  # ready for the chat template
    template_tools: Optional[list[dict]]  # for native templates
    grammar: Optional[str]

    @property
    def forced(self) -> bool:
        return self.choice != "auto"

    def stage(self) -> "ToolCallStage":
        return ToolCallStage(self)

    def spec_fields(self) -> dict:
        """What a ``GenerationSpec`` takes from the plan: grammar, tools for the template, markers kept."""
        return {"grammar": self.grammar, "tools": self.template_tools, "keep_special": self.format.special}

    def read(self, text: str) -> tuple[str, list[ToolCall]]:
        """(content, calls) of a finished reply; a malformed or unknown call leaves it all as text."""
        if self.forced:
            calls = parse_json_calls(text) or []
            content = "" if calls else text
        else:
            content, calls = self.format.parse(text, {t.name: t.parameters for t in self.tools})
            if not calls and self.format.name in ("hermes", "fallback") and text.lstrip().startswith(("{", "[")):
                calls, content = parse_json_calls(text.strip()) or [], ""
                content = "" if calls else text
        names = {t.name for t in self.tools}
        if any(c.name not in names for c in calls):
            return text, []
        if not self.parallel and len(calls) > 1:
            calls = calls[:1]
        return content, calls


def plan(messages: Sequence[dict], tools: Sequence[Tool], template: Optional[str], *,
         tool_choice: Union[None, str, dict] = None, parallel: bool = True) -> Optional[ToolPlan]:  # fmt: skip
    """The plan for ``messages`` with ``tools`` on a model whose chat template is ``template``.

    Returns ``None`` when there is nothing to plan (no tools, or ``tool_choice="none"``): the
    messages then still need ``plain_messages`` for any tool turns in the history.

    Raises:
        ValueError: a bad ``tool_choice``.
    """
    tools = list(tools)
    if not tools:
        return None
    choice = choice_of(tool_choice, tools)
    if choice == "none":
        return None
    fmt = detect(template)
    chosen = tools if choice in ("auto", "required") else [t for t in tools if t.name == choice]
    grammar = None
    if choice != "auto":
        grammar = calls_grammar(chosen, parallel=parallel and choice == "required")
    elif not fmt.native:
        grammar = calls_grammar(tools, parallel=parallel, tags=FALLBACK_TAGS, or_text=True)
    if fmt.native:
        msgs = native_messages(messages)
        template_tools = [t.openai() for t in tools]
    else:
        msgs = fallback_messages(messages, tools, choice)
        template_tools = None
    return ToolPlan(fmt, tools, choice, parallel, msgs, template_tools, grammar)


# ---- messages ----------------------------------------------------------------------------------
def _call_parts(m: dict) -> list[tuple[str, Any]]:
    """(name, arguments as an object) of an assistant message's ``tool_calls``."""
    out = []
    for c in m.get("tool_calls") or []:
        fn = c.get("function", c) if isinstance(c, dict) else {}
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                pass  # kept as the text the client sent
        out.append((fn.get("name", ""), args if args is not None else {}))
    return out


def native_messages(messages: Iterable[dict]) -> list[dict]:
    """Messages for a template that renders tools: arguments as objects, content never None."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("content") is None:
            m["content"] = ""
        if m.get("tool_calls"):
            m["tool_calls"] = [{"id": c.get("id", ""), "type": "function",
                                "function": {"name": name, "arguments": args}}
                               for c, (name, args) in zip(m["tool_calls"], _call_parts(m))]  # fmt: skip
        out.append(m)
    return out


def plain_messages(messages: Iterable[dict]) -> list[dict]:
    """Tool turns as plain text, for templates without tools (and requests with tools off):
    calls in ``<tool_call>`` tags in the assistant's turn, results in a user turn."""
    out: list[dict] = []
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = [f"{FALLBACK_TAGS[0]}\n{json.dumps({'name': n, 'arguments': a}, ensure_ascii=False)}\n{FALLBACK_TAGS[1]}"
                     for n, a in _call_parts(m)]  # fmt: skip
            out.append({"role": "assistant", "content": "\n".join(([content] if content else []) + calls)})
        elif role == "tool":
            text = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + text  # results of parallel calls: one user turn
            else:
                out.append({"role": "user", "content": text, "_tool": True})
        else:
            out.append({"role": role, "content": content})
    for m in out:
        m.pop("_tool", None)
    return out


def fallback_messages(messages: Iterable[dict], tools: Sequence[Tool], choice: str) -> list[dict]:
    """``plain_messages`` with the tools described in the system prompt."""
    out = plain_messages(messages)
    lines = "\n".join(json.dumps(t.openai()["function"], ensure_ascii=False) for t in tools)
    rule = _RULES.get(choice) or f"Answer by calling the tool {choice}."
    text = _FALLBACK_PROMPT.format(tools=lines, rule=rule)
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{text}" if out[0]["content"] else text}
    else:
        out.insert(0, {"role": "system", "content": text})
    return out


# ---- reading the reply -------------------------------------------------------------------------
class ToolCallStage(Stage):
    """Streams the text before a call, then each call's arguments as they are written
    (``("tool_call", CallDelta)`` events); sets the calls on the result (see the module's docstring)."""

    def __init__(self, tool_plan: ToolPlan) -> None:
        self.plan = tool_plan
        self.seen = ""  # all text so far
        self.sent = 0  # how much of it was passed on
        self.holding = tool_plan.forced  # a forced reply is calls only: nothing is streamed as text
        heads = JSON_HEADS if tool_plan.forced else tool_plan.format.heads
        names = {t.name for t in tool_plan.tools} if tool_plan.choice in ("auto", "required") else {tool_plan.choice}
        self.reader = CallReader(heads, names)
        self.calls: list[ToolCall] = []
        self.content = ""

    def _safe_end(self) -> int:
        """How far the text can be streamed: up to a call's opening marker, or a partial one at the end."""
        text, end = self.seen, len(self.seen)
        start = text.lstrip()
        if self.sent == 0 and any(start.startswith(m) or m.startswith(start) for m in self.plan.format.leads):
            self.holding = start != "" and any(start.startswith(m) for m in self.plan.format.leads)
            return 0
        for marker in self.plan.format.opens:
            i = text.find(marker, self.sent)
            if i >= 0:
                self.holding = True
                end = min(end, i)
                continue
            end = min(end, len(text) - partial_suffix(text, marker))  # a marker cut at the end
        return end

    def on_event(self, event: Event) -> Iterable[Event]:
        kind, payload = event
        if kind != "delta":
            return (event,)
        self.seen += payload  # type: ignore[operator]
        out: list[Event] = []
        if not self.holding:
            end = self._safe_end()
            if end > self.sent:
                out.append(("delta", self.seen[self.sent:end]))
                self.sent = end
        if self.holding:
            self.reader.start_at(self.sent)
            out += [("tool_call", d) for d in self.reader.feed(self.seen)]
        return out

    def on_end(self, result: Completion) -> Iterable[Event]:
        self.content, self.calls = self.plan.read(result.text)
        if self.calls:
            # the text before the calls that was held back with a partial marker
            rest = self.content[self.sent:] if self.content.startswith(self.seen[:self.sent]) else ""
            settled = self.reader.settle(self.calls, result.text)
            return ((("delta", rest),) if rest else ()) + tuple(("tool_call", d) for d in settled)
        rest = result.text[self.sent:]
        self.sent = len(result.text)
        return (("delta", rest),) if rest else ()

    def on_result(self, result: Completion) -> Completion:
        if self.calls:
            result.text = self.content
            result.tool_calls = list(self.calls)
            if result.finish_reason == "stop":
                result.finish_reason = "tool_calls"
        return result


def history_messages(messages: Iterable[dict], template: Optional[str]) -> list[dict]:
    """Messages with tool turns in the history, for a request that plans no tools this time."""
    return native_messages(messages) if detect(template).native else plain_messages(messages)
