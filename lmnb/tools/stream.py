"""Reading tool calls while they are written, so clients get each call's arguments as they come.

A family's ``heads`` (``formats.CallFormat.heads``) match the start of a call up to the ``{`` of
its arguments and names the tool; from there the arguments are passed on as written, until the
brace that closes them. The finished reply is still read whole (``ToolPlan.read``); a streamed
call whose arguments mean the same as the one read keeps its id and the model's own text, so the
streamed pieces join to exactly the call of the final result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

from .formats import new_call_id

__all__ = ["CallDelta", "CallReader"]


@dataclass(frozen=True)
class CallDelta:
    """A piece of a streamed call (OpenAI's ``delta.tool_calls`` item): the first piece of a call
    has its ``id`` and ``name``; the pieces' ``arguments`` join to the call's arguments."""

    index: int
    id: Optional[str]
    name: Optional[str]
    arguments: str

    def openai(self) -> dict:
        fn: dict = {"arguments": self.arguments}
        if self.id is None:
            return {"index": self.index, "function": fn}
        return {"index": self.index, "id": self.id, "type": "function", "function": {"name": self.name, **fn}}


@dataclass
class _Call:
    id: str
    name: str
    start: int  # where the arguments' "{" is
    scanned: int  # how far the braces were counted
    sent: int  # how much was passed on
    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    end: Optional[int] = None  # just after the closing "}", once written

    def scan(self, text: str) -> None:
        """Count braces outside strings from where the last look stopped; note where the object closes."""
        i = self.scanned
        while i < len(text) and self.end is None:
            ch = text[i]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.end = i + 1
            i += 1
        self.scanned = i


class CallReader:
    """Finds calls in a reply's text as it grows, and says what is new of each (``CallDelta``)."""

    def __init__(self, heads: "tuple[re.Pattern[str], ...]", names: set[str]) -> None:
        self.heads = heads
        self.names = names
        self.calls: list[_Call] = []
        self.pos = 0  # where the next call is looked for
        self.stopped = False  # a call to a tool that was not given: the rest comes whole at the end

    def start_at(self, pos: int) -> None:
        if not self.calls:
            self.pos = pos

    def feed(self, text: str) -> list[CallDelta]:
        """The new pieces of calls in ``text`` (the whole reply so far)."""
        out: list[CallDelta] = []
        while not self.stopped:
            call = self.calls[-1] if self.calls and self.calls[-1].end is None else None
            if call is None:
                found = [m for m in (h.search(text, self.pos) for h in self.heads) if m is not None]
                m = min(found, key=lambda m: m.start(), default=None)
                if m is None:
                    break
                if m.group("name") not in self.names:
                    self.stopped = True
                    break
                call = _Call(new_call_id(), m.group("name"), m.end(), m.end(), m.end())
                self.calls.append(call)
                out.append(CallDelta(len(self.calls) - 1, call.id, call.name, ""))
            call.scan(text)
            upto = call.end if call.end is not None else call.scanned
            if upto > call.sent:
                out.append(CallDelta(len(self.calls) - 1, None, None, text[call.sent:upto]))
                call.sent = upto
            if call.end is None:
                break
            self.pos = call.end
        return out

    def arguments(self, index: int, text: str) -> Optional[str]:
        """The streamed arguments of call ``index`` as written, once closed (None if not)."""
        if index >= len(self.calls) or self.calls[index].end is None:
            return None
        c = self.calls[index]
        return text[c.start:c.end]

    def settle(self, calls: list, text: str) -> list[CallDelta]:
        """Match the calls read from the finished ``text`` with those streamed: a streamed call that
        means the same keeps its id and written arguments; the others are sent whole now."""
        out = []
        for i, call in enumerate(calls):
            if i < len(self.calls):
                streamed = self.arguments(i, text)
                if self.calls[i].name == call.name and streamed is not None and _same(streamed, call.arguments):
                    call.id, call.arguments = self.calls[i].id, streamed
                continue  # already begun on the wire: its index cannot be sent again
            out.append(CallDelta(i, call.id, call.name, call.arguments))
        return out


def _same(a: str, b: str) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False
