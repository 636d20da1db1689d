"""A tool: a name, what it does, the JSON Schema of its arguments, and (in the notebook) the function.

Python functions become tools from their signature and docstring, as the OpenAI Agents SDK and
pydantic-ai do::

    def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        '''The current weather in a city.

        Args:
            city: the city's name, e.g. "Paris".
            unit: degrees Celsius or Fahrenheit.
        '''

    Tool.from_function(get_weather).openai()
    # {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city.",
    #  "parameters": {"type": "object", "properties": {"city": {...}, "unit": {...}}, "required": ["city"]}}}

The schema comes from pydantic (type hints, defaults) and ``docstring_parser`` (Google, NumPy,
reST and Epydoc styles); calling the tool validates the model's arguments against it first.
"""

from __future__ import annotations

import inspect
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Union

__all__ = ["Tool", "as_tools"]

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass
class Tool:
    """One function the model may call.

    Args:
        name: what the model calls it (letters, digits, ``_`` and ``-``; at most 64 characters).
        description: what it does, for the model.
        parameters: the JSON Schema of its arguments (an object).
        fn: the Python function run for a call (``None`` for tools that only describe a call,
            as those a server client sends).
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    fn: Optional[Callable[..., Any]] = field(default=None, repr=False, compare=False)
    _model: Any = field(default=None, repr=False, compare=False)  # the pydantic model validating arguments

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64 or not set(self.name) <= _NAME_OK:
            raise ValueError(f"invalid tool name {self.name!r}: use 1-64 letters, digits, '_' or '-'")
        if not isinstance(self.parameters, dict) or self.parameters.get("type", "object") != "object":
            raise ValueError(f"the parameters of tool {self.name!r} must be a JSON Schema of type object")

    # ---- building ----------------------------------------------------------------------------
    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: Optional[str] = None,
                      description: Optional[str] = None) -> "Tool":  # fmt: skip
        """The tool for ``fn``: its name, its docstring's summary and its parameters' types and docs.

        Raises:
            TypeError: a parameter's type has no JSON Schema (e.g. an open file).
        """
        import docstring_parser
        import pydantic

        doc = docstring_parser.parse(inspect.getdoc(fn) or "")
        param_docs = {p.arg_name: p.description for p in doc.params if p.description}
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception:  # unresolvable annotations (a forward reference): treat them as Any
            hints = {}
        fields: dict[str, Any] = {}
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("self", "cls"):
                continue
            hint = hints.get(p.name, Any)
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (hint, pydantic.Field(default, description=param_docs.get(p.name)))
        tool_name = name or getattr(fn, "__name__", "tool")
        try:
            model = pydantic.create_model(f"{tool_name}_arguments", **fields)
            schema = model.model_json_schema()
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as e:
            raise TypeError(f"{tool_name}: a parameter's type cannot be described in JSON Schema ({e})") from None
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        text = description if description is not None else "\n\n".join(
            s for s in (doc.short_description, doc.long_description) if s)
        return cls(tool_name, text or "", schema, fn, model)

    @classmethod
    def from_openai(cls, spec: dict[str, Any]) -> "Tool":
        """A tool from OpenAI's shape: ``{"type": "function", "function": {name, description,
        parameters}}`` (Chat Completions) or the same keys flat (Responses)."""
        if not isinstance(spec, dict) or spec.get("type", "function") != "function":
            raise ValueError(f"only function tools are supported, not {str(spec.get('type') if isinstance(spec, dict) else spec)[:40]!r}")
        fn = spec.get("function", spec)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValueError("a function tool needs a 'name'")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        return cls(fn["name"], fn.get("description") or "", params)

    # ---- using -------------------------------------------------------------------------------
    def openai(self) -> dict[str, Any]:
        """OpenAI's Chat Completions shape (also what chat templates take as ``tools``)."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def call(self, arguments: Union[str, dict[str, Any]]) -> Any:
        """Run the function with the model's ``arguments`` (JSON text or a dict), validated first.

        Raises:
            ValueError: the arguments are not valid JSON or do not match the schema.
            TypeError: the tool has no function.
        """
        if self.fn is None:
            raise TypeError(f"tool {self.name!r} has no Python function to run")
        args = json.loads(arguments or "{}") if isinstance(arguments, str) else dict(arguments)
        if not isinstance(args, dict):
            raise ValueError(f"the arguments must be a JSON object, not {type(args).__name__}")
        if self._model is not None:
            import pydantic

            try:
                checked = self._model.model_validate(args)
            except pydantic.ValidationError as e:
                raise ValueError(f"invalid arguments for {self.name}: {e}") from None
            args = {k: getattr(checked, k) for k in type(checked).model_fields}
        return self.fn(**args)


def as_tools(items: Optional[Iterable[Any]]) -> list[Tool]:
    """Tools from what a caller passes: ``Tool``s, Python functions, OpenAI tool dicts or MCP servers.

    Raises:
        ValueError: two tools share a name, or a dict is not a function tool.
        TypeError: an item is none of these.
    """
    tools: list[Tool] = []
    for item in items or ():
        if isinstance(item, Tool):
            tools.append(item)
        elif isinstance(item, dict):
            tools.append(Tool.from_openai(item))
        elif callable(getattr(item, "tools", None)):  # an MCP server: all its tools
            tools.extend(item.tools())
        elif callable(item):
            tools.append(Tool.from_function(item))
        else:
            raise TypeError(f"a tool must be a function, a Tool or an OpenAI tool dict, not {type(item).__name__}")
    seen: set[str] = set()
    for t in tools:
        if t.name in seen:
            raise ValueError(f"two tools are named {t.name!r}")
        seen.add(t.name)
    return tools
