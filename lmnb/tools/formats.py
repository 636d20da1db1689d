"""How models write tool calls, and reading them back: one parser per family, chosen from the template.

| family | what the model writes | whose |
|---|---|---|
| ``hermes`` | ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` | Qwen 2.5 / 3, Hermes, SmolLM3, many fine-tunes |
| ``llama3`` | ``{"name": ..., "parameters": {...}}``, maybe after ``<|python_tag|>``; ``<function=NAME>{...}</function>``; ``[name(key=value)]`` | Llama 3.1 / 3.2 / 3.3 |
| ``mistral`` | ``[TOOL_CALLS][{"name": ..., "arguments": {...}}]`` or ``[TOOL_CALLS]name[ARGS]{...}`` | Mistral, Mixtral, Ministral, Devstral, Magistral |
| ``gpt-oss`` | ``<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>`` | gpt-oss (harmony) |
| ``gemma4`` | ``<|tool_call>call:NAME{key:<|"|>text<|"|>,n:1}<tool_call|>`` | Gemma 4 |
| ``qwen3-coder`` | ``<tool_call><function=NAME><parameter=KEY>value</parameter></function></tool_call>`` | Qwen3-Coder, Qwen3.5 |
| ``fallback`` | lmnb's own: the ``hermes`` shape, taught in the system prompt | templates without tools (SmolLM2, Gemma 3) |

A template that renders ``tools`` itself is *native*: the tools go to the template and the reply
is read with its family's parser. Any other template gets the fallback (``lmnb.tools.prompting``).
A reply whose call is malformed (bad JSON, no name, cut off) comes back as text, never as an error.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..types import ToolCall

__all__ = ["CallFormat", "detect", "FORMATS", "JSON_HEADS", "parse_json_calls", "new_call_id"]

Parsed = tuple[str, list[ToolCall]]  # (the text before the calls, the calls)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class CallFormat:
    """One family's way of writing calls.

    Attributes:
        name: the family (see the table above).
        native: the template renders the tools (else lmnb's fallback prompt does).
        opens: text that starts a call in a reply: streamed text is held back from there on.
        special: its markers are control tokens, which a reply must keep as text to be read.
        parse: (reply text, each tool's parameter schema by name, or None) -> (content, calls);
            the schemas type values of formats that write them as text (``qwen3-coder``).
        heads: patterns of a call's start up to its arguments' ``{``, the tool in group ``name``
            (for streaming the arguments as they are written: ``lmnb.tools.stream``).
        leads: text that starts a call only at the very start of a reply.
    """

    name: str
    native: bool
    opens: tuple[str, ...]
    special: bool
    parse: Callable[[str, Optional[dict[str, dict]]], Parsed]
    heads: tuple["re.Pattern[str]", ...] = ()
    leads: tuple[str, ...] = ()


# ---- JSON calls ------------------------------------------------------------------------------
def _arguments(value: Any) -> Optional[str]:
    """The arguments as compact JSON object text, or None when they are not an object."""
    if value is None:
        value = {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    return json.dumps(value, ensure_ascii=False)


def _call(obj: Any) -> Optional[ToolCall]:
    """A call from one JSON object in any of the usual shapes, or None."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {...}} (OpenAI's own)
        inner = obj["function"]
        call = _call(inner)
        if call is not None and isinstance(obj.get("id"), str):
            call.id = obj["id"]
        return call
    if isinstance(obj.get("tool_call"), dict):  # {"tool_call": {...}} (llama.cpp's former generic format)
        return _call(obj["tool_call"])
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None
    args = _arguments(obj.get("arguments", obj.get("parameters")))
    if args is None:
        return None
    call_id = obj.get("id") if isinstance(obj.get("id"), str) and obj.get("id") else new_call_id()
    return ToolCall(call_id, name, args)


def _json_values(text: str) -> Optional[list[Any]]:
    """Every JSON value in ``text``, one after the other (separated by space, ``,`` or ``;``); None
    if anything else is there."""
    dec = json.JSONDecoder()
    out, i, n = [], 0, len(text)
    while True:
        while i < n and (text[i].isspace() or text[i] in ",;"):
            i += 1
        if i >= n:
            return out
        try:
            value, i = dec.raw_decode(text, i)
        except ValueError:
            return None
        out.append(value)


def parse_json_calls(text: str) -> Optional[list[ToolCall]]:
    """Calls written as bare JSON: objects, or lists of them (what a forced call's grammar yields).
    None unless the whole text is calls."""
    values = _json_values(text)
    if not values:
        return None
    calls = []
    for v in values:
        for obj in v if isinstance(v, list) else [v]:
            call = _call(obj)
            if call is None:
                return None
            calls.append(call)
    return calls


# ---- the families ----------------------------------------------------------------------------
_HERMES = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)


def _parse_hermes(text: str, schemas: Optional[dict[str, dict]] = None) -> Parsed:
    start = text.find("<tool_call>")
    if start < 0:
        return text, []
    calls: list[ToolCall] = []
    for body in _HERMES.findall(text[start:]):
        found = parse_json_calls(body.strip())
        if not found:
            return text, []
        calls += found
    return _before(text, start), calls


def _before(text: str, start: int) -> str:
    """The text before a call, exactly as streamed (nothing if it is only space)."""
    return text[:start] if text[:start].strip() else ""


_LLAMA_FUNCTION = re.compile(r"<function=([\w.\-]+)>(.*?)</function>", re.S)


def _parse_llama3(text: str, schemas: Optional[dict[str, dict]] = None) -> Parsed:
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>"):]
    body = body.removesuffix("<|eom_id|>").removesuffix("<|eot_id|>").strip()
    if body.startswith("<function="):  # Llama 3.1's other form: <function=NAME>{...}</function>
        found = _LLAMA_FUNCTION.findall(body)
        calls = []
        for name, args in found:
            arguments = _arguments(args.strip()) if args.strip().startswith("{") else None
            if arguments is None:
                return text, []
            calls.append(ToolCall(new_call_id(), name, arguments))
        rest = _LLAMA_FUNCTION.sub("", body).strip()
        return ("", calls) if calls and not rest else (text, [])
    if body.startswith("[") and not body.startswith(("[{", "[ {")):
        calls = _pythonic_calls(body)  # Llama 3.2's pythonic form: [f(a=1), g(b="x")]
        return ("", calls) if calls else (text, [])
    if not body.startswith(("{", "[")):
        return text, []
    calls = parse_json_calls(body)
    if calls:
        return "", calls
    try:  # a call, then prose after it: the prose is the content
        value, end = json.JSONDecoder().raw_decode(body)
    except ValueError:
        return text, []
    calls = [c for c in (_call(v) for v in (value if isinstance(value, list) else [value]))]
    if not calls or None in calls or not body[end:].strip():
        return text, []
    return body[end:].strip(), calls  # type: ignore[return-value]


def _pythonic_calls(body: str) -> Optional[list[ToolCall]]:
    """``[name(key=literal, ...), ...]``, read with ``ast`` (nothing is evaluated but literals)."""
    import ast

    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(tree, ast.List) or not tree.elts:
        return None
    calls = []
    for node in tree.elts:
        if not isinstance(node, ast.Call) or node.args or not isinstance(node.func, (ast.Name, ast.Attribute)):
            return None
        try:
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            return None
        calls.append(ToolCall(new_call_id(), ast.unparse(node.func), json.dumps(args, ensure_ascii=False)))
    return calls


_MISTRAL_NAMED = re.compile(r"\s*([\w.\-]+)\s*(?:\[CALL_ID\]\s*([\w\-]+)\s*)?\[ARGS\]", re.S)


def _parse_mistral(text: str, schemas: Optional[dict[str, dict]] = None) -> Parsed:
    start = text.find("[TOOL_CALLS]")
    if start < 0:
        return text, []
    calls: list[ToolCall] = []
    for segment in text[start:].split("[TOOL_CALLS]")[1:]:
        segment = segment.replace("</s>", "").strip()
        named = _MISTRAL_NAMED.match(segment)
        if named:  # v11 and later: NAME[ARGS]{...}, maybe with [CALL_ID]
            rest = segment[named.end():].strip()
            try:
                args, end = json.JSONDecoder().raw_decode(rest)
            except ValueError:
                return text, []
            arguments = _arguments(args)
            if arguments is None or rest[end:].strip():
                return text, []
            calls.append(ToolCall(named.group(2) or new_call_id(), named.group(1), arguments))
        else:  # v3 / v7: a JSON list of calls
            found = parse_json_calls(segment)
            if not found:
                return text, []
            calls += found
    return _before(text, start), calls


_HARMONY_CALL = re.compile(
    r"to=functions\.([\w.\-]+)[^<]*(?:<\|channel\|>[^<]*)?(?:<\|constrain\|>[^<]*)?<\|message\|>(.*?)(?:<\|call\|>|<\|end\|>|$)",
    re.S)
_HARMONY_FINAL = re.compile(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|end\|>|<\|return\|>|$)", re.S)


def _parse_gpt_oss(text: str, schemas: Optional[dict[str, dict]] = None) -> Parsed:
    final = _HARMONY_FINAL.search(text)
    content = final.group(1).strip() if final else text
    calls: list[ToolCall] = []
    for name, body in _HARMONY_CALL.findall(text):
        body = body.strip()
        arguments = _arguments(body)  # JSON text; an empty body is no arguments
        if arguments is None:
            return text, []
        calls.append(ToolCall(new_call_id(), name, arguments))
    if calls:
        return (content if final else ""), calls
    return content, []


# Gemma 4: <|tool_call>call:NAME{key:<|"|>text<|"|>,n:42}<tool_call|> (keys bare, strings between <|"|>)
_GEMMA_CALL = re.compile(r"<\|tool_call>\s*call:([\w.\-]+)\s*(?=\{)")
_GEMMA_QUOTE = '<|"|>'


def _gemma_value(text: str, i: int) -> tuple[Any, int]:
    """One value of Gemma 4's argument syntax at ``i``, and where it ends (``ValueError`` if malformed)."""
    while i < len(text) and text[i].isspace():
        i += 1
    if text.startswith(_GEMMA_QUOTE, i):
        end = text.find(_GEMMA_QUOTE, i + len(_GEMMA_QUOTE))
        if end < 0:
            raise ValueError("a string is not closed")
        return text[i + len(_GEMMA_QUOTE):end], end + len(_GEMMA_QUOTE)
    if i < len(text) and text[i] in "{[":
        closing, out = ("}", {}) if text[i] == "{" else ("]", [])
        i += 1
        while True:
            while i < len(text) and text[i] in " \t\n,":
                i += 1
            if text.startswith(closing, i):
                return out, i + 1
            if isinstance(out, dict):
                colon = text.find(":", i)
                key = text[i:colon].strip() if colon > 0 else ""
                if key.startswith(_GEMMA_QUOTE) and key.endswith(_GEMMA_QUOTE) and len(key) > 2 * len(_GEMMA_QUOTE):
                    key = key[len(_GEMMA_QUOTE):-len(_GEMMA_QUOTE)]
                if not re.fullmatch(r"[\w.\- ]+", key):
                    raise ValueError("a key is not a name")
                out[key], i = _gemma_value(text, colon + 1)
            else:
                value, i = _gemma_value(text, i)
                out.append(value)
    m = re.compile(r"[^,}\]]*").match(text, i)
    token = m.group().strip() if m else ""
    value = json.loads(token)  # a number, true, false or null; anything else is malformed
    if isinstance(value, (str, list, dict)):
        raise ValueError("a bare value that is not a number, true, false or null")
    return value, m.end()  # type: ignore[union-attr]


def _parse_gemma4(text: str, schemas: Optional[dict[str, dict]] = None) -> Parsed:
    first = _GEMMA_CALL.search(text)
    if first is None:
        return text, []
    calls, pos = [], first.start()
    for m in _GEMMA_CALL.finditer(text, pos):
        if m.start() < pos:
            continue  # inside the previous call's arguments
        try:
            args, pos = _gemma_value(text, m.end())
        except (ValueError, IndexError):
            return text, []
        calls.append(ToolCall(new_call_id(), m.group(1), json.dumps(args, ensure_ascii=False)))
    return _before(text, first.start()), calls


# Qwen3-Coder / Qwen3.5: <tool_call><function=NAME><parameter=KEY>VALUE</parameter>...</function></tool_call>
_XML_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|$)", re.S)
_XML_PARAMETER = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.S)
_PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def _xml_value(raw: str, schema: Optional[dict]) -> Any:
    """A parameter's value: written as text, typed by the tool's schema (strings stay as written)."""
    kind = (schema or {}).get("type")
    if kind == "string" or (kind is None and schema and "enum" in schema):
        return raw
    if raw.strip() in _PYTHON_LITERALS:  # its template writes values with Python's str()
        return _PYTHON_LITERALS[raw.strip()]
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _parse_qwen_xml(text: str, schemas: Optional[dict[str, dict]] = None) -> Parsed:
    start = text.find("<tool_call>")
    fn = text.find("<function=")
    if fn < 0:
        return text, []
    start = start if 0 <= start < fn else fn  # some replies leave out the opening <tool_call>
    calls = []
    for name, body in _XML_FUNCTION.findall(text[start:]):
        props = ((schemas or {}).get(name) or {}).get("properties") or {}
        args = {key: _xml_value(value, props.get(key)) for key, value in _XML_PARAMETER.findall(body)}
        if not re.fullmatch(r"[\w.\-]+", name) or _XML_PARAMETER.sub("", body).strip():
            return text, []  # a name that is not one, or text that is not a parameter
        calls.append(ToolCall(new_call_id(), name, json.dumps(args, ensure_ascii=False)))
    return _before(text, start), calls


# where each family's arguments begin (for streaming them): a JSON call object, named first
JSON_HEADS = (re.compile(r'\{\s*(?:"type"\s*:\s*"function"\s*,\s*)?"name"\s*:\s*"(?P<name>[^"\\]+)"\s*,\s*'
                         r'"(?:arguments|parameters)"\s*:\s*(?=\{)'),)
_MISTRAL_HEAD = re.compile(r"\[TOOL_CALLS\]\s*(?P<name>[\w.\-]+)\s*(?:\[CALL_ID\]\s*[\w\-]+\s*)?\[ARGS\]\s*(?=\{)")
_HARMONY_HEAD = re.compile(r"to=functions\.(?P<name>[\w.\-]+)[^<]*(?:<\|channel\|>[^<]*)?(?:<\|constrain\|>[^<]*)?"
                           r"<\|message\|>\s*(?=\{)")

FORMATS: dict[str, CallFormat] = {
    "hermes": CallFormat("hermes", True, ("<tool_call>",), False, _parse_hermes, JSON_HEADS),
    "llama3": CallFormat("llama3", True, ("<|python_tag|>", '{"name"', '{"type"', "[{", "<function="), True, _parse_llama3,
                         (*JSON_HEADS, re.compile(r"<function=(?P<name>[\w.\-]+)>\s*(?=\{)")), leads=("[",)),
    "mistral": CallFormat("mistral", True, ("[TOOL_CALLS]",), True, _parse_mistral, (_MISTRAL_HEAD, *JSON_HEADS)),
    "gpt-oss": CallFormat("gpt-oss", True, ("<|channel|>", "<|start|>"), True, _parse_gpt_oss, (_HARMONY_HEAD,)),
    "gemma4": CallFormat("gemma4", True, ("<|tool_call>",), True, _parse_gemma4),
    "qwen3-coder": CallFormat("qwen3-coder", True, ("<tool_call>", "<function="), False, _parse_qwen_xml),
    "fallback": CallFormat("fallback", False, ("<tool_call>",), False, _parse_hermes, JSON_HEADS),
}


def detect(template: Optional[str]) -> CallFormat:
    """The family of a chat template (its Jinja source), from the markers it writes.

    A template that never mentions ``tools`` gets the fallback; one that renders tools in a way
    not listed here is read as ``hermes`` (the most common), whose parser also takes bare JSON.
    """
    t = template or ""
    if "tools" not in t and "tool_calls" not in t:
        return FORMATS["fallback"]
    if "to=functions" in t or "<|channel|>" in t:
        return FORMATS["gpt-oss"]
    if "[TOOL_CALLS]" in t:
        return FORMATS["mistral"]
    if "<|tool_call>" in t:
        return FORMATS["gemma4"]
    if "<function=" in t and "<parameter=" in t:
        return FORMATS["qwen3-coder"]
    if "<tool_call>" in t:
        return FORMATS["hermes"]
    if "<|python_tag|>" in t or "ipython" in t or "<|eom_id|>" in t:
        return FORMATS["llama3"]
    return FORMATS["hermes"]
