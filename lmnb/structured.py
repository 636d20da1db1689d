"""Structured output: JSON that matches a schema, by construction.

A schema — a pydantic model, a dataclass, a ``TypedDict``, a JSON Schema dict, or ``"json"`` for
any JSON object — becomes a GBNF grammar that constrains sampling, so the model can only write
text of that shape; the reply is then parsed back into the schema's type::

    class Person(pydantic.BaseModel):
        name: str
        age: int

    lmnb.chat("Invent a person.", schema=Person).parsed    # Person(name=..., age=...)

pydantic (a dependency of the server), llama.cpp's grammar converter and jsonschema are imported
on first use only, so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import sys
import types
import typing
from typing import Any, Optional

from .errors import StructuredOutputError

__all__ = ["json_schema", "grammar", "parse", "StructuredOutputError"]

ANY_OBJECT: dict[str, Any] = {"type": "object"}

# A dict must have one of these to be taken for a JSON Schema: they say what shape the value has.
# (the keywords llama.cpp's converter can start from; the first six are named in the error)
_SHAPE_KEYWORDS = ("type", "properties", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "items", "prefixItems",
                   "additionalProperties", "pattern", "format")


def _pydantic() -> Any:
    """The pydantic module, or None without it (a function, so tests can take it away)."""
    try:
        import pydantic
    except ImportError:
        return None
    return pydantic


def _is_any_object(schema: Any) -> bool:
    return (
        schema is None
        or schema is dict
        or (isinstance(schema, str) and schema.lower() == "json")
        or (isinstance(schema, dict) and not schema)  # {}: like the server's empty response_format schema
    )


def _name(schema: Any) -> str:
    if isinstance(schema, dict):
        return "the JSON Schema"
    return getattr(schema, "__name__", None) or repr(schema)


# ----------------------------------------------------------------------------------------------
# Schema -> JSON Schema -> GBNF
# ----------------------------------------------------------------------------------------------
def json_schema(schema: Any = None) -> dict[str, Any]:
    """The JSON Schema of ``schema``.

    ``schema`` is a pydantic model class, a dataclass, a ``TypedDict`` (or any type pydantic's
    ``TypeAdapter`` understands, e.g. ``list[Person]``), a JSON Schema dict (returned as is), or
    ``None`` / ``"json"`` / ``dict`` / ``{}`` for "any JSON object". Raises ``TypeError`` for
    anything else and ``ValueError`` for a dict that is not a JSON Schema.
    """
    if _is_any_object(schema):
        return dict(ANY_OBJECT)
    if isinstance(schema, str):
        raise TypeError(f"schema={schema!r}: expected 'json', a JSON Schema dict, or a pydantic model, "
                        "dataclass or TypedDict class")
    if isinstance(schema, dict):
        _check_schema_dict(schema)
        return schema
    if not _is_type(schema):
        hint = ""
        if dataclasses.is_dataclass(schema) or hasattr(type(schema), "model_json_schema"):
            hint = f" (pass the class {type(schema).__name__}, not an instance)"
        raise TypeError(f"schema={schema!r} is not a schema{hint}: expected a pydantic model, dataclass or "
                        "TypedDict class, a JSON Schema dict, or 'json'")
    pd = _pydantic()
    if pd is None:
        return _fallback_schema(schema, ())
    try:
        if isinstance(schema, type) and issubclass(schema, pd.BaseModel):
            return schema.model_json_schema()
        return _adapter(schema).json_schema()
    except pd.PydanticUserError as e:  # not a type pydantic can describe (an arbitrary class, ...)
        first = str(e).strip().splitlines()[0]
        raise TypeError(f"{_name(schema)} cannot be used as a schema: {first}") from None


def _is_type(obj: Any) -> bool:
    return isinstance(obj, type) or typing.get_origin(obj) is not None


def _check_schema_dict(schema: dict) -> None:
    if not any(k in schema for k in _SHAPE_KEYWORDS):
        raise ValueError(f"{_short(schema)} is not a JSON Schema: expected at least one of "
                         f"{', '.join(repr(k) for k in _SHAPE_KEYWORDS[:6])}, ... (e.g. "
                         "{'type': 'object', 'properties': {...}})")
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the JSON Schema is not JSON-serializable: {e}") from None


def _short(value: Any, n: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def grammar(schema: Any = None) -> str:
    """The GBNF grammar (llama.cpp's format) that only admits JSON matching ``schema``.

    Conversions are cached on the schema's JSON text, so asking again for the same schema costs
    only a ``json.dumps``. Raises ``ValueError`` when llama.cpp's converter refuses the schema
    (with its reason, which usually names the part it could not handle).
    """
    if _is_any_object(schema):
        from llama_cpp.llama_grammar import JSON_GBNF

        return JSON_GBNF
    # no sort_keys: the order of "properties" is the order the model writes them in
    return _gbnf(json.dumps(json_schema(schema)))


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


# ----------------------------------------------------------------------------------------------
# Reply -> object
# ----------------------------------------------------------------------------------------------
def parse(text: str, schema: Any = None, finish_reason: str = "stop", *, max_tokens: Optional[int] = None) -> Any:
    """The reply ``text`` as an object of ``schema``'s type.

    A pydantic model gives an instance, a dataclass an instance, a ``TypedDict`` a dict, a JSON
    Schema dict or ``"json"`` the decoded JSON (checked with ``jsonschema`` when it is installed).

    Raises ``StructuredOutputError`` when the reply ended before the JSON was complete
    (``finish_reason`` ``"length"``: it hit ``max_tokens``; ``"cancelled"``), or when it does not
    validate (constraints a grammar cannot express, such as some string formats).
    """
    if not (_is_any_object(schema) or isinstance(schema, dict) or _is_type(schema)):
        json_schema(schema)  # raises the TypeError that says what a schema can be
    if finish_reason != "stop" and not _complete_json(text):
        raise StructuredOutputError(_cut_off(finish_reason, max_tokens), text=text, finish_reason=finish_reason)
    try:
        return _validate(text, schema)
    except StructuredOutputError:
        raise
    except Exception as e:  # JSON, pydantic, jsonschema and fallback errors alike
        raise StructuredOutputError(
            f"The reply does not match {_name(schema)}: {_why(e)}\nReply: {_short(text, 500)}",
            text=text, finish_reason=finish_reason,
        ) from None


def _complete_json(text: str) -> bool:
    # A reply that stopped early may still hold a whole value when the limit fell right after its
    # last character: objects, arrays, strings and literals are self-delimiting, a bare number is
    # not ("12" may be the start of "123").
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return not isinstance(value, (int, float)) or isinstance(value, bool)


def _cut_off(finish_reason: str, max_tokens: Optional[int]) -> str:
    if finish_reason == "length":
        limit = f"max_tokens={max_tokens}" if max_tokens and max_tokens > 0 else "max_tokens (or the context)"
        more = f" (e.g. max_tokens={2 * max_tokens}, or `-n {2 * max_tokens}` in %%lm)" if max_tokens and max_tokens > 0 else ""
        return (f"The reply was cut off at {limit} before the JSON was complete. Raise max_tokens{more}, "
                "or ask for less: shorter strings and fewer items (maxLength / maxItems in the schema).")
    if finish_reason == "cancelled":
        return "The reply was cancelled before the JSON was complete; there is no object to parse."
    return f"The reply ended ({finish_reason}) before the JSON was complete; there is no object to parse."


def _why(e: BaseException) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):  # pydantic.ValidationError: one line per problem, without the docs links
        try:
            return "; ".join(f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in errors())
        except Exception:
            pass
    path = getattr(e, "json_path", None)  # jsonschema.ValidationError
    if path is not None and hasattr(e, "message"):
        return f"{path}: {e.message}"
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg} at character {e.pos})"
    return str(e)


def _validate(text: str, schema: Any) -> Any:
    if _is_any_object(schema):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        return value
    if isinstance(schema, dict):
        value = json.loads(text)
        try:
            import jsonschema
        except ImportError:  # the grammar already enforced the shape; jsonschema only adds the rest
            return value
        jsonschema.validate(value, schema)
        return value
    pd = _pydantic()
    if pd is None:
        return _build(schema, json.loads(text), "")
    if isinstance(schema, type) and issubclass(schema, pd.BaseModel):
        return schema.model_validate_json(text)
    return _adapter(schema).validate_json(text)


def _adapter(tp: Any) -> Any:
    try:
        return _cached_adapter(tp)
    except TypeError:  # unhashable (an Annotated with a list inside, ...)
        return _pydantic().TypeAdapter(tp)


@functools.lru_cache(maxsize=256)
def _cached_adapter(tp: Any) -> Any:
    return _pydantic().TypeAdapter(_compatible(tp))


def _compatible(tp: Any, stack: tuple = ()) -> Any:
    """``tp`` with every ``typing.TypedDict`` in it remade as a ``typing_extensions.TypedDict``.

    pydantic refuses ``typing.TypedDict`` before Python 3.12 (its ``Required``/``NotRequired``
    information is incomplete there); the class a notebook defines should still just work.
    """
    if sys.version_info >= (3, 12):
        return tp
    if _is_typeddict(tp) and type(tp).__module__ == "typing":
        import typing_extensions as te

        if tp in stack:
            raise TypeError(f"{tp.__name__} refers to itself: on Python < 3.12 define it with "
                            "typing_extensions.TypedDict")
        hints = typing.get_type_hints(tp, include_extras=True)
        required = getattr(tp, "__required_keys__", frozenset(hints))
        fields = {}
        for k, v in hints.items():
            v = _compatible(v, (*stack, tp))
            fields[k] = v if k in required else te.NotRequired[v]
        new = te.TypedDict(tp.__name__, fields)  # type: ignore[operator]
        new.__module__, new.__doc__ = tp.__module__, tp.__doc__
        return new
    args = typing.get_args(tp)
    if not args:
        return tp
    new_args = tuple(_compatible(a, stack) for a in args)
    if all(a is b for a, b in zip(args, new_args)):
        return tp
    origin = typing.get_origin(tp)
    if origin in _UNIONS:
        return typing.Union[new_args]  # type: ignore[return-value]
    if origin is typing.Annotated:
        return typing.Annotated[new_args]  # type: ignore[return-value]
    if isinstance(tp, types.GenericAlias):
        return types.GenericAlias(origin, new_args)
    return tp.copy_with(new_args) if hasattr(tp, "copy_with") else tp


# ----------------------------------------------------------------------------------------------
# Without pydantic: dataclasses / TypedDicts of str, int, float, bool, list[...], Optional[...]
# ----------------------------------------------------------------------------------------------
_UNIONS = (typing.Union, types.UnionType)
_PRIMITIVES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    dict: {"type": "object"},
}


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


def _fields(tp: Any) -> tuple[dict[str, Any], set[str]]:
    """Field types and required field names of a dataclass or TypedDict."""
    hints = typing.get_type_hints(tp)
    if dataclasses.is_dataclass(tp):
        fs = [f for f in dataclasses.fields(tp) if f.init]
        required = {f.name for f in fs if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        return {f.name: hints[f.name] for f in fs}, required
    return hints, set(getattr(tp, "__required_keys__", hints))


def _fallback_schema(tp: Any, seen: tuple) -> dict[str, Any]:
    if tp is Any:
        return {}
    if tp in _PRIMITIVES:
        return dict(_PRIMITIVES[tp])
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return {"type": "array", "items": _fallback_schema(args[0], seen) if args else {}}
    if origin in _UNIONS:
        return {"anyOf": [_fallback_schema(a, seen) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if dataclasses.is_dataclass(tp) or _is_typeddict(tp):
        if tp in seen:
            raise TypeError(f"{tp.__name__} refers to itself: recursive schemas need pydantic installed")
        hints, required = _fields(tp)
        props = {k: _fallback_schema(v, (*seen, tp)) for k, v in hints.items()}
        return {"type": "object", "title": tp.__name__, "properties": props,
                "required": [k for k in hints if k in required]}
    raise TypeError(f"{_name(tp)} cannot be used as a schema without pydantic (installed, it handles any "
                    "type): only str, int, float, bool, list[...], Optional[...], Literal[...], dataclasses "
                    "and TypedDicts of those")


def _build(tp: Any, value: Any, path: str) -> Any:
    """``value`` (decoded JSON) checked against ``tp`` and turned into it (nested dataclasses)."""
    where = path or "(root)"
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in _PRIMITIVES:
        if tp is type(None) and value is None:
            return None
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [v if item is Any else _build(item, v, f"{path}.{i}".lstrip(".")) for i, v in enumerate(value)]
    if origin in _UNIONS:
        problems = []
        for a in args:
            try:
                return _build(a, value, path)
            except ValueError as e:
                problems.append(str(e))
        raise ValueError(" or ".join(problems))
    if origin is typing.Literal:
        if value in args:
            return value
        raise ValueError(f"{where}: expected one of {list(args)}, got {value!r}")
    if dataclasses.is_dataclass(tp) or _is_typeddict(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {value!r}")
        hints, required = _fields(tp)
        missing = [k for k in hints if k in required and k not in value]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        kw = {k: _build(hints[k], v, f"{path}.{k}".lstrip(".")) for k, v in value.items() if k in hints}
        return tp(**kw)
    raise TypeError(f"{_name(tp)} cannot be used as a schema without pydantic")
