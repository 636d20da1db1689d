"""Grammars for tool calls: each call's name is one of the tools and its arguments match that tool's schema.

- ``tool_choice`` ``required`` or a named function: the reply *is* the call(s), as bare JSON
  (``{"name": ..., "arguments": {...}}``), valid by construction.
- The fallback's ``auto``: the reply is either text or calls in ``<tool_call>`` tags; the first
  character decides (text may not start with ``<``), and a call, once started, is well-formed.

Arguments whose schema llama.cpp's converter cannot take (rare keywords) fall back to "any JSON
object" for that tool only, so one odd tool never costs the others their grammar.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Optional, Sequence

from ..gbnf import from_json_schema
from .spec import Tool

__all__ = ["calls_grammar"]

_log = logging.getLogger("lmnb")
_ANY_OBJECT = {"type": "object"}
MAX_PARALLEL = 8  # calls in one reply, at most


def _call_schema(tool: Tool) -> dict:
    return {"type": "object", "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
            "required": ["name", "arguments"]}


def _call_rules(tools: Sequence[Tool]) -> str:
    """GBNF rules whose ``tc-call`` is one call to any of ``tools``."""
    alternatives = []
    for tool in tools:
        try:
            from_json_schema(json.dumps(_call_schema(tool)))  # this tool's schema alone converts?
            alternatives.append(_call_schema(tool))
        except ValueError as e:
            _log.warning("lmnb: tool %s: its arguments are constrained to any JSON object (%s)", tool.name, e)
            alternatives.append(_call_schema(Tool(tool.name, tool.description, _ANY_OBJECT)))
    schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    rules = from_json_schema(json.dumps(schema))
    return re.sub(r"^root ::=", "tc-call ::=", rules, flags=re.M)


def calls_grammar(tools: Sequence[Tool], *, parallel: bool = True, tags: Optional[tuple[str, str]] = None,
                  or_text: bool = False) -> str:  # fmt: skip
    """The GBNF grammar of a reply made of calls to ``tools``.

    Args:
        tools: the tools that may be called (at least one).
        parallel: several calls in a row are allowed, one per tool at most (else exactly one).
        tags: ``(open, close)`` written around each call, e.g. ``("<tool_call>", "</tool_call>")``.
        or_text: the reply may instead be plain text (which must not start with ``tags[0][0]``).
    """
    if not tools:
        raise ValueError("a tool-call grammar needs at least one tool")
    one = "tc-call"
    if tags:
        one = f"{json.dumps(tags[0])} tc-ws tc-call tc-ws {json.dumps(tags[1])}"
    # at most one call per tool in one reply: small models otherwise repeat a call until max_tokens
    # (the loop asks again, so a second call to the same tool just comes a step later)
    more = min(len(tools), MAX_PARALLEL) - 1
    calls = f"tc-one (tc-ws tc-one){{0,{more}}}" if parallel and more > 0 else "tc-one"
    lines = [f"tc-one ::= {one}", f"tc-calls ::= {calls}", "tc-ws ::= [ \\t\\n]{0,4}"]
    if or_text:
        if not tags:
            raise ValueError("a reply that may be text needs tags around its calls")
        first = tags[0][0].replace("\\", "\\\\").replace("]", "\\]").replace("^", "\\^")
        lines += ["root ::= tc-calls | tc-text", f"tc-text ::= [^{first}] [^\\x00]*"]
    else:
        lines.append("root ::= tc-calls")
    return "\n".join(lines) + "\n" + _call_rules(tools)
