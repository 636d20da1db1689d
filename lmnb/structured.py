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
import sys
import types
import typing
from typing import Any, Optional

from .errors import StructuredOutputError
from .gbnf import from_json_schema

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
    return from_json_schema(json.dumps(json_schema(schema)))


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
