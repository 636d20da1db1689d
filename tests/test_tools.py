"""Tools without a model: schemas from Python functions, each family's call parser on recorded
outputs (malformed ones come back as text), the fallback prompt and the grammars."""

from __future__ import annotations

import json
from typing import Literal, Optional

import pytest

from lmnb.tools import Tool, as_tools
from lmnb.tools.formats import FORMATS, detect
from lmnb.tools.plan import ToolCallStage, ToolPlan, plain_messages, plan
from lmnb.types import Completion, Timings, Usage


def get_weather(city: str, unit: Literal["C", "F"] = "C", days: Optional[int] = None) -> str:
    """The weather in a city.

    Today's, or a forecast.

    Args:
        city: the city's name, e.g. "Paris".
        unit: degrees Celsius or Fahrenheit.
        days: how many days ahead.
    """
    return f"18 {unit} in {city}" + (f" for {days} days" if days else "")


WEATHER = Tool.from_function(get_weather)


# ---- tools from functions ----------------------------------------------------------------------
def test_a_function_becomes_a_tool_from_its_hints_and_docstring():
    spec = WEATHER.openai()["function"]
    assert spec["name"] == "get_weather"
    assert spec["description"] == "The weather in a city.\n\nToday's, or a forecast."
    props = spec["parameters"]["properties"]
    assert spec["parameters"]["required"] == ["city"]
    assert props["city"] == {"type": "string", "description": 'the city\'s name, e.g. "Paris".'}
    assert props["unit"]["enum"] == ["C", "F"] and props["unit"]["default"] == "C"
    assert {"type": "integer"} in props["days"]["anyOf"]


def test_calling_a_tool_validates_the_arguments_first():
    assert WEATHER.call('{"city": "Paris"}') == "18 C in Paris"
    assert WEATHER.call({"city": "Oslo", "unit": "F", "days": 3}) == "18 F in Oslo for 3 days"
    with pytest.raises(ValueError, match="city"):
        WEATHER.call('{"unit": "C"}')
    with pytest.raises(ValueError, match="unit"):
        WEATHER.call('{"city": "Paris", "unit": "K"}')
    with pytest.raises(ValueError):
        WEATHER.call("not json")


def test_tools_from_dicts_and_bad_input():
    tools = as_tools([get_weather, {"type": "function", "function": {"name": "now", "description": "The time."}}])
    assert [t.name for t in tools] == ["get_weather", "now"]
    assert tools[1].parameters == {"type": "object", "properties": {}}
    with pytest.raises(ValueError, match="same|two tools"):
        as_tools([get_weather, get_weather])
    with pytest.raises(ValueError, match="invalid tool name"):
        Tool("get weather!")
    with pytest.raises(TypeError):
        as_tools([42])
    with pytest.raises(ValueError, match="only function tools"):
        Tool.from_openai({"type": "web_search"})


# ---- call formats ------------------------------------------------------------------------------
# Replies as the models wrote them, from public bug reports (the URL says where).
RECORDED = [
    # Qwen3-Next-80B-A3B-Instruct: https://github.com/cubist38/mlx-openai-server/issues/83
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>',
     "", [("get_weather", {"city": "Tokyo"})]),
    # Qwen2.5-7B-Instruct, two calls: https://github.com/abetlen/llama-cpp-python/issues/1784
    ("hermes", '<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": "San Francisco, CA, USA"}}\n'
               '</tool_call>\n<tool_call>\n{"name": "get_temperature_date", "arguments": {"location": "San Francisco, '
               'CA, USA", "date": "2024-10-01"}}\n</tool_call>',
     "", [("get_current_temperature", {"location": "San Francisco, CA, USA"}),
          ("get_temperature_date", {"location": "San Francisco, CA, USA", "date": "2024-10-01"})]),
    # Devstral-Small-2-24B-Instruct-2512: https://github.com/ml-explore/mlx-lm/issues/1307
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"location": "Paris"}', "", [("get_weather", {"location": "Paris"})]),
    # Mistral 7B v0.3 / Small 3.1 (list form)
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"location": "San Francisco", "unit": "celsius"}}]',
     "", [("get_weather", {"location": "San Francisco", "unit": "celsius"})]),
    # gpt-oss (harmony), analysis then a call
    ("gpt-oss", "<|channel|>analysis<|message|>Need to use function get_current_weather.<|end|><|start|>assistant"
                '<|channel|>commentary to=functions.get_current_weather <|constrain|>json<|message|>'
                '{"location":"San Francisco"}<|call|>',
     "", [("get_current_weather", {"location": "San Francisco"})]),
    # Llama 3.1 / 3.2: bare JSON with "parameters", or after <|python_tag|>
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [("get_weather", {"city": "Paris"})]),
    ("llama3", '<|python_tag|>{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>',
     "", [("get_weather", {"city": "Paris"})]),
    # text before the call is kept as the content
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}\n</tool_call>',
     "Let me check.\n", [("get_weather", {"city": "Rome"})]),
]

MALFORMED = [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tok'),  # cut off
    ("hermes", "<tool_call>\nget_weather(city='Tokyo')\n</tool_call>"),  # not JSON
    ("hermes", '<tool_call>{"arguments": {"city": "Tokyo"}}</tool_call>'),  # no name
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"location": '),
    ("mistral", "[TOOL_CALLS]I think I should call get_weather"),
    ("llama3", '{"name": "get_weather", "parameters": "Paris"}'),  # arguments not an object
    ("gpt-oss", "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{city: Paris}<|call|>"),
]


@pytest.mark.parametrize("family,text,content,calls", RECORDED)
def test_each_family_parser_reads_recorded_calls(family, text, content, calls):
    got_content, got = FORMATS[family].parse(text)
    assert got_content == content
    assert [(c.name, json.loads(c.arguments)) for c in got] == calls
    assert all(c.id.startswith("call_") or c.id for c in got)


@pytest.mark.parametrize("family,text", MALFORMED)
def test_malformed_calls_come_back_as_text(family, text):
    content, calls = FORMATS[family].parse(text)
    assert calls == [] and content == text


def test_the_family_is_read_from_the_template():
    assert detect(None).name == "fallback"
    assert detect("{% for m in messages %}{{ m.content }}{% endfor %}").name == "fallback"
    assert detect("{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools> "
                  "<tool_call>{% endif %}").name == "hermes"
    assert detect("{% if tools %}[AVAILABLE_TOOLS]{{ tools }}{% endif %}[TOOL_CALLS]").name == "mistral"
    assert detect("{% if tools %}{{ '<|python_tag|>' }}{% endif %}").name == "llama3"
    assert detect("{% if tools %}to=functions.{{ name }}<|channel|>{% endif %}").name == "gpt-oss"


# ---- the fallback ------------------------------------------------------------------------------
def test_the_fallback_describes_the_tools_and_writes_tool_turns_as_text():
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "a", "content": "18 C"},
        {"role": "tool", "tool_call_id": "b", "content": "4 C"},
    ]
    p = plan(history, [WEATHER], None)
    assert p.format.name == "fallback" and p.template_tools is None
    system = p.messages[0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n")
    assert '"name": "get_weather"' in system["content"] and "<tool_call>" in system["content"]
    assert [m["role"] for m in p.messages] == ["system", "user", "assistant", "user"]
    assert p.messages[2]["content"].count("<tool_call>") == 2 and '"city": "Oslo"' in p.messages[2]["content"]
    assert p.messages[3]["content"] == "<tool_response>\n18 C\n</tool_response>\n<tool_response>\n4 C\n</tool_response>"
    assert "tc-text" in p.grammar and '"<tool_call>"' in p.grammar  # text, or calls in tags
    assert plain_messages(history)[1:] == p.messages[1:]


def test_tool_choice_shapes_the_grammar():
    other = Tool("now", "The time.")
    required = plan([{"role": "user", "content": "x"}], [WEATHER, other], None, tool_choice="required")
    assert "tc-text" not in required.grammar and '"<tool_call>"' not in required.grammar
    assert '\\"get_weather\\"' in required.grammar and '\\"now\\"' in required.grammar
    named = plan([{"role": "user", "content": "x"}], [WEATHER, other], None,
                 tool_choice={"type": "function", "function": {"name": "now"}})
    assert named.choice == "now" and '\\"get_weather\\"' not in named.grammar
    assert plan([{"role": "user", "content": "x"}], [WEATHER], None, tool_choice="none") is None
    with pytest.raises(ValueError, match="not among"):
        plan([{"role": "user", "content": "x"}], [WEATHER], None, tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(ValueError):
        plan([{"role": "user", "content": "x"}], [WEATHER], None, tool_choice="sometimes")


def test_a_native_template_gets_the_tools_and_objects_as_arguments():
    template = "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}<tool_call>"
    history = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}]
    p = plan(history, [WEATHER], template)
    assert p.format.name == "hermes" and p.grammar is None
    assert p.template_tools == [WEATHER.openai()]
    assert p.messages[0]["content"] == "" and p.messages[0]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}


# ---- the output stage --------------------------------------------------------------------------
def _run_stage(stage, pieces, finish="stop"):
    """(text streamed, call pieces streamed, result); the call pieces as (piece, sent before the end)."""
    streamed, other = [], []

    def take(events, before_end):
        for kind, payload in events:
            if kind == "delta":
                streamed.append(payload)
            else:
                assert kind == "tool_call"
                other.append((payload, before_end))

    for piece in pieces:
        take(stage.on_event(("delta", piece)), True)
    result = Completion("".join(pieces), finish, Usage(), Timings())
    take(stage.on_end(result), False)
    return "".join(streamed), other, stage.on_result(result)


def _assemble(pieces) -> list[tuple[str, str, str]]:
    """(id, name, arguments) of each call, joined from its pieces as a client joins them by index."""
    calls: dict[int, list[str]] = {}
    for piece, _ in pieces:
        if piece.id is not None:
            assert piece.index not in calls  # a call begins once
            calls[piece.index] = [piece.id, piece.name, ""]
        calls[piece.index][2] += piece.arguments
    return [tuple(calls[i]) for i in sorted(calls)]


def test_the_stage_streams_text_and_holds_back_a_call():
    p = plan([{"role": "user", "content": "x"}], [WEATHER], None)
    pieces = ["Let me ", "check. <tool", "_call>\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": ",
              "\"Rome\"}}\n</tool_call>"]
    streamed, other, result = _run_stage(ToolCallStage(p), pieces)
    assert streamed == result.text == "Let me check. "
    assert result.finish_reason == "tool_calls" and [c.name for c in result.tool_calls] == ["get_weather"]
    assert _assemble(other) == [(c.id, c.name, c.arguments) for c in result.tool_calls]
    assert [p.arguments for p, before_end in other if before_end] == ["", '{"city": ', '"Rome"}']  # as written


@pytest.mark.parametrize("family,text,content,calls", RECORDED)
def test_streamed_call_pieces_join_to_the_finished_calls(family, text, content, calls):
    """Each recorded reply, fed four characters at a time: the text before the calls streams as
    text, the arguments stream as written, and the pieces join to exactly the result's calls."""
    tools = [Tool(name, "", {"type": "object"}) for name in {c[0] for c in calls}]
    stage = ToolCallStage(ToolPlan(FORMATS[family], tools, "auto", True, [], None, None))
    streamed, pieces, result = _run_stage(stage, [text[i:i + 4] for i in range(0, len(text), 4)])
    assert streamed == result.text == content
    assert _assemble(pieces) == [(c.id, c.name, c.arguments) for c in result.tool_calls]
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == calls
    if '"arguments": "' not in text:  # arguments written as an object (not as a JSON string) stream
        assert sum(1 for p, before_end in pieces if before_end and p.arguments) > 1


def test_the_stage_gives_back_held_text_that_was_not_a_call():
    p = plan([{"role": "user", "content": "x"}], [WEATHER], None)
    pieces = ["Use <", "tool_call> tags, like <tool_call>this</tool_call>."]
    streamed, other, result = _run_stage(ToolCallStage(p), pieces)
    assert streamed == result.text == "".join(pieces) and result.tool_calls is None and other == []
    # a call to a tool that does not exist is text too
    bad = ['<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>']
    streamed, _, result = _run_stage(ToolCallStage(p), bad)
    assert result.tool_calls is None and streamed == result.text == bad[0]
