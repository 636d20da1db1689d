"""Python functions as tools in the kernel: ask, run the calls the model makes, give it the results, repeat.

``run`` is the loop behind ``lmnb.chat(prompt, tools=[f, g])`` and ``%%lm chat --tools f,g``:

1. the model is asked with the tools (``plan``);
2. each call it makes runs here, in the kernel (after ``confirm`` says yes, when given); an
   exception inside a tool goes back to the model as that call's result, as text;
3. the calls and results join the messages and the model is asked again, up to ``max_steps``
   rounds of calls; then it answers without tools.

The caller supplies ``ask`` (how to submit one request), so this loop knows nothing of engines or
backends, and ``on_step`` to show each step as it happens.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from ..types import Completion, Message, ToolCall
from .plan import ToolPlan, history_messages, plan
from .spec import Tool

__all__ = ["Step", "ToolRun", "run"]

# a tool's result is cut to this many characters before it goes back to the model
MAX_RESULT_CHARS = 20_000


@dataclass
class Step:
    """One call the model made, and what came of it."""

    call: ToolCall
    output: str  # what went back to the model
    error: Optional[str] = None  # the exception, when the tool raised one
    declined: bool = False  # confirm said no
    seconds: float = 0.0
    value: Any = field(default=None, repr=False)  # the tool's own return value


@dataclass
class ToolRun:
    """The final answer, every step, and the messages the run added after the user's."""

    completion: Completion
    steps: list[Step]
    messages: list[Message]  # assistant calls, tool results and the final answer


def _output(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n[... cut: {len(text) - MAX_RESULT_CHARS} more characters]"
    return text


def call_tool(tool: Optional[Tool], call: ToolCall, confirm: Optional[Callable[[ToolCall], bool]] = None) -> Step:
    """Run one call; never raises (but lets KeyboardInterrupt through: the user stopped the cell)."""
    if tool is None:
        return Step(call, f"Error: there is no tool named {call.name!r}.", error="unknown tool")
    if confirm is not None and not confirm(call):
        return Step(call, "The user declined to run this call.", declined=True)
    t0 = time.perf_counter()
    try:
        value = tool.call(call.arguments)
    except Exception as e:  # the model sees what went wrong and may try again
        return Step(call, f"Error: {type(e).__name__}: {e}", error=f"{type(e).__name__}: {e}",
                    seconds=time.perf_counter() - t0)  # fmt: skip
    return Step(call, _output(value), seconds=time.perf_counter() - t0, value=value)


def run(messages: Sequence[Message], tools: Sequence[Tool], ask: Callable[[list[Message], Optional[ToolPlan]], Completion],
        template: Optional[str], *, tool_choice: Union[None, str, dict] = None, max_steps: int = 5,
        confirm: Optional[Callable[[ToolCall], bool]] = None, on_step: Optional[Callable[[Step], None]] = None,
        record: Optional[list[Message]] = None) -> ToolRun:  # fmt: skip
    """Chat with ``tools`` until the model answers without calling one (or ``max_steps`` rounds).

    Args:
        messages: the chat so far, ending with the user's message.
        tools: the tools, with their functions.
        ask: submits one request: ``(messages, plan)`` -> the finished ``Completion``; ``plan`` is
            None for the last request, made without tools.
        template: the model's chat template (picks the call format).
        tool_choice: for the first request (``required`` or a name force a call); later ones are ``auto``.
        max_steps: rounds of calls before the model must answer without tools.
        confirm: asked before each call runs; False declines it (the model is told).
        on_step: called after each call, with its ``Step``.
        record: each round's messages (calls and results) are appended here as soon as the round
            is done, so a caller still has them when the run is interrupted (Ctrl-C).

    A ``KeyboardInterrupt`` (the user stopped the cell) is never caught: not in the model's
    reply (``ask`` cancels the request) and not inside a tool, whose call is not retried.
    """
    if max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    by_name = {t.name: t for t in tools}
    history = list(messages)
    added: list[Message] = record if record is not None else []
    steps: list[Step] = []
    choice = tool_choice
    for _ in range(max_steps):
        tool_plan = plan(history, tools, template, tool_choice=choice)
        if tool_plan is None:  # tool_choice "none"
            break
        result = ask(tool_plan.messages, tool_plan)
        if not result.tool_calls or result.finish_reason == "cancelled":
            added.append(_answer(result))
            return ToolRun(result, steps, added)
        turn: list[Message] = [{"role": "assistant", "content": result.text or None,
                                "tool_calls": [c.openai() for c in result.tool_calls]}]  # fmt: skip
        for call in result.tool_calls:
            step = call_tool(by_name.get(call.name), call, confirm)
            steps.append(step)
            turn.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": step.output})
            if on_step is not None:
                on_step(step)
        history += turn
        added += turn
        choice = None  # a forced first call is not forced again
    result = ask(history_messages(history, template), None)
    added.append(_answer(result))
    return ToolRun(result, steps, added)


def ask_yes_no(call: ToolCall) -> bool:
    """``confirm=True``: ask in the cell (or terminal) before a call runs."""
    answer = input(f"Run {call.name}({call.arguments})? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _answer(result: Completion) -> Message:
    from ..replies import reply_stats

    reply = {"role": "assistant", "content": result.text, "stats": reply_stats(result)}
    if result.reasoning:
        reply["reasoning"] = result.reasoning
    return reply
