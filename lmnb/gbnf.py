"""JSON Schema -> GBNF, the grammar format llama.cpp samples under.

llama-cpp-python's converter (``llama_cpp.llama_grammar.SchemaConverter``), with the fixes a
reply needs to stay valid by construction: integer ranges, JSON's string characters, ``\\d``
classes in patterns, and whitespace that may break lines. ``lmnb.structured`` turns schemas
(pydantic, dataclasses, dicts) into JSON Schema and calls :func:`from_json_schema`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Optional

__all__ = ["from_json_schema"]


def from_json_schema(schema_json: str) -> str:
    """The GBNF grammar admitting exactly the JSON that ``schema_json`` (JSON text) describes.

    Cached on the text. Raises:
        ValueError: llama.cpp's converter refused the schema (the reason names the part).
    """
    return _gbnf(schema_json)


@functools.lru_cache(maxsize=256)
def _gbnf(schema_json: str) -> str:
    try:
        return _json_schema_to_gbnf(schema_json)
    except RecursionError:
        raise ValueError("the JSON Schema cannot be turned into a grammar: it nests too deeply") from None
    except Exception as e:  # the converter reports with assert / ValueError / KeyError
        raise ValueError(f"the JSON Schema cannot be turned into a grammar: {_reason(e)}") from None


def _json_schema_to_gbnf(schema_json: str) -> str:
    """llama.cpp's ``json_schema_to_gbnf`` with two changes.

    - Integer ranges (minimum / maximum), which the converter of this llama-cpp-python version
      ignores: ``age: int = Field(ge=0, le=120)`` could otherwise come out as 2349 and fail
      validation only after the whole reply was generated.
    - Whitespace may be a line break and an indent, as in ``JSON_GBNF`` and newer llama.cpp, not
      just one space: models write pretty-printed JSON, and refusing each of their line breaks
      costs a re-sample over the whole vocabulary (and pushes them off their usual output).
    """
    from llama_cpp import llama_grammar as lg

    global _Converter
    if _Converter is None:

        class _Converter(lg.SchemaConverter):  # type: ignore[no-redef]
            def __init__(self, **kw: Any) -> None:
                super().__init__(**kw)
                self._rules["space"] = _SPACE_RULE

            def format_grammar(self) -> str:
                if "char" in self._rules:
                    self._rules["char"] = _CHAR_RULE
                return super().format_grammar()

            def visit(self, schema: Any, name: str) -> str:
                if isinstance(schema, dict) and isinstance(schema.get("pattern"), str):
                    schema = {**schema, "pattern": _expand_classes(schema["pattern"])}
                bounds = _int_bounds(schema) if isinstance(schema, dict) else None
                if bounds is None:
                    return super().visit(schema, name)
                rule_name = name + "-" if name in lg.RESERVED_NAMES else name or "root"
                return self._add_rule(rule_name, _int_range(*bounds) + " space")

    converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(json.loads(schema_json), "stdin")
    converter.visit(schema, "")
    return converter.format_grammar()


_Converter: Any = None

# A JSON string character. The converter's own rule lets raw control characters through (a line
# break inside a string is invalid JSON, and the model did write one); these are JSON's rules,
# as in llama.cpp's json-schema-to-grammar. The escapes are GBNF's, not Python's.
_CHAR_RULE = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'

# The converter copies \d, \w and \s into the grammar as literal text (which llama.cpp then
# refuses to parse): spell them out as character classes first.
_CLASSES = {"d": "0-9", "w": "A-Za-z0-9_", "s": " \\t\\n\\r"}


def _expand_classes(pattern: str) -> str:
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in _CLASSES:
                out.append(_CLASSES[nxt] if in_class else f"[{_CLASSES[nxt]}]")
            elif nxt.lower() in _CLASSES and not in_class:
                out.append(f"[^{_CLASSES[nxt.lower()]}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)
# at most one line break and 20 spaces or tabs per gap, so whitespace alone cannot run on
_SPACE_RULE = '| " " | "\\n" [ \\t]{0,20}'

# The converter's own integer rule allows at most 16 digits; bounds beyond that are no bound.
_MAX_DIGITS = 16


def _int_bounds(schema: dict) -> Optional[tuple[Optional[int], Optional[int]]]:
    """(lowest, highest) allowed for an integer schema with a range, else None."""
    if schema.get("type") != "integer" or not any(
        k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    ):
        return None
    lo = hi = None
    if isinstance(schema.get("minimum"), (int, float)):
        lo = math.ceil(schema["minimum"])
        if schema.get("exclusiveMinimum") is True and lo == schema["minimum"]:  # draft 4
            lo += 1
    if isinstance(schema.get("maximum"), (int, float)):
        hi = math.floor(schema["maximum"])
        if schema.get("exclusiveMaximum") is True and hi == schema["maximum"]:
            hi -= 1
    ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_lo, (int, float)) and not isinstance(ex_lo, bool):
        lo = max(lo, math.floor(ex_lo) + 1) if lo is not None else math.floor(ex_lo) + 1
    if isinstance(ex_hi, (int, float)) and not isinstance(ex_hi, bool):
        hi = min(hi, math.ceil(ex_hi) - 1) if hi is not None else math.ceil(ex_hi) - 1
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"no integer satisfies {_short(schema)} (minimum above maximum)")
    if lo is not None and len(str(abs(lo))) > _MAX_DIGITS:
        lo = None
    if hi is not None and len(str(abs(hi))) > _MAX_DIGITS:
        hi = None
    return None if lo is None and hi is None else (lo, hi)


def _int_range(lo: Optional[int], hi: Optional[int]) -> str:
    """A GBNF expression for the integers in [lo, hi] (None: unbounded), without leading zeros."""
    alts = []
    if hi is None or hi >= 0:
        alts += _naturals(max(lo, 0) if lo is not None else 0, hi)
    if lo is None or lo < 0:
        # -lo .. -hi, as magnitudes after a minus sign
        alts.append('"-" ' + _alt(_naturals(1 if hi is None or hi >= 0 else -hi, None if lo is None else -lo)))
    return _alt(alts)


def _naturals(a: int, b: Optional[int]) -> list[str]:
    """Alternatives covering a..b (b None: up to 16 digits), one per number of digits."""
    out = []
    n_b = _MAX_DIGITS if b is None else len(str(b))
    for n in range(len(str(a)), n_b + 1):
        lo = max(a, 10 ** (n - 1) if n > 1 else 0)
        if b is None and lo == 10 ** (n - 1) and n > 1:  # every longer number is allowed
            out.append(f"[1-9] [0-9]{{{n - 1},{_MAX_DIGITS - 1}}}" if n < _MAX_DIGITS else f"[1-9] {_digits(n - 1)}")
            break
        out.append(_same_length(str(lo), str(10 ** n - 1 if b is None else min(b, 10 ** n - 1))))
    return out


def _same_length(lo: str, hi: str) -> str:
    """The numbers from ``lo`` to ``hi``, written with the same number of digits."""
    if lo == hi:
        return f'"{lo}"'
    if lo[0] == hi[0]:
        return f'"{lo[0]}" ' + _same_length(lo[1:], hi[1:])
    rest = len(lo) - 1
    first, last = int(lo[0]), int(hi[0])
    alts = []
    if rest and lo[1:] != "0" * rest:  # lo's first digit, then lo's tail .. 99…
        alts.append(f'"{lo[0]}" ' + _same_length(lo[1:], "9" * rest))
        first += 1
    tail_hi = None
    if rest and hi[1:] != "9" * rest:  # hi's first digit, then 00… .. hi's tail
        tail_hi = f'"{hi[0]}" ' + _same_length("0" * rest, hi[1:])
        last -= 1
    if first <= last:  # the first digits in between: any tail
        digit = f'"{first}"' if first == last else f"[{first}-{last}]"
        alts.append(f"{digit} {_digits(rest)}".strip())
    if tail_hi:
        alts.append(tail_hi)
    return _alt(alts)


def _digits(n: int) -> str:
    return "" if n == 0 else "[0-9]" if n == 1 else f"[0-9]{{{n}}}"


def _alt(alts: list[str]) -> str:
    return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    # The converter is shared with a command-line tool: drop its flag hints and its "stdin" base URL.
    text = re.sub(r"\s*\(use --[\w-]+ [^)]*\)", "", text)
    text = text.replace("stdin#", "#")
    if text.startswith("Fetching remote schemas is not allowed"):
        text = "remote $ref URLs are not fetched; put the referenced schema under $defs and use '#/$defs/NAME'"
    return text


def _short(value: Any, n: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."
