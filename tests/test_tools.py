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
    # gpt-oss-20b (the server's log drops <|call|>): https://github.com/kekzl/imp/pull/1719
    ("gpt-oss", '<|channel|>analysis<|message|>We need to use the get_weather function. Provide city "Berlin".<|end|>\n'
                '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>'
                '{"city":"Berlin"}', "", [("get_weather", {"city": "Berlin"})]),
    # gpt-oss-120b, no <|start|>, arguments over several lines: https://github.com/lmstudio-ai/lmstudio-bug-tracker/issues/873
    ("gpt-oss", "<|channel|>commentary to=functions.run_javascript <|constrain|>json<|message|>{\n"
                "\"javascript\": \"console.log('Hello, world!');\",\n\"timeout_seconds\": 5\n}",
     "", [("run_javascript", {"javascript": "console.log('Hello, world!');", "timeout_seconds": 5})]),
    # gpt-oss-20b, a garbled first header, then a call: https://github.com/ggml-org/llama.cpp/issues/27720
    ("gpt-oss", '<|channel|>commentary 2? The request "turn on the light" ambiguous. We have to ask clarifying question: '
                '"Which light would you like to turn on?" According to rule: If ambiguous request, ask one short '
                'question. Also we must not add humor. Provide a single question.<|end|><|start|>assistant<|channel|>'
                'commentary to=functions.HassTurnOn<|constrain|>json<|message|>{"name":"Light","area":"Living Room"}',
     "", [("HassTurnOn", {"name": "Light", "area": "Living Room"})]),
    # gpt-oss, a call, a result it wrote itself (no recipient: not a call), then its final answer:
    # https://github.com/sgl-project/sglang/pull/9097
    ("gpt-oss", '<|channel|>commentary to=functions.sales_search <|constrain|>json<|message|>{\n  "firstName": "John"\n}'
                '<|call|><|start|>assistant<|start|>assistant<|channel|>commentary<|message|>{\n  "error": "No data found '
                'for the given first name."\n}<|call|><|start|>assistant<|channel|>final<|message|>I’m sorry, but I '
                'couldn’t find any sales data for a representative named\u202fJohn.',
     "I’m sorry, but I couldn’t find any sales data for a representative named\u202fJohn.",
     [("sales_search", {"firstName": "John"})]),
    # Llama-3.2-3B-Instruct, numbers written as strings: https://github.com/ggml-org/llama.cpp/pull/11556
    ("llama3", '{"name": "add", "parameters": {"a": "1", "b": "9"}}', "", [("add", {"a": "1", "b": "9"})]),
    # Llama 3.x, a call and then prose: https://github.com/vllm-project/vllm/pull/19024
    ("llama3", '{"type": "function", "name": "getOpenIncidentsTool", "parameters": {}} \n\nWould you like to know more '
               'about a specific open incident?',
     "Would you like to know more about a specific open incident?", [("getOpenIncidentsTool", {})]),
    # llama3.2:3b, two calls separated by ";": https://github.com/atwmarshall/dead-reckoning/issues/30
    ("llama3", '{"name": "slugify", "parameters": {}}; {"name": "trace_impact", "parameters": {"symbol": "slugify"}}',
     "", [("slugify", {}), ("trace_impact", {"symbol": "slugify"})]),
    # Meta-Llama-3.1-8B-Instruct-4bit: https://github.com/raullenchai/Rapid-MLX/issues/700
    ("llama3", '{"name": "web_search", "parameters": {"query": "你好"}}', "", [("web_search", {"query": "你好"})]),
    # Llama 3.1 via Together, the <function=...> form: https://github.com/Tanzania-AI-Community/twiga/issues/63
    ("llama3", '<function=generate_exercise>{"query": "animal grazing question for secondary school students in '
               'Tanzania"} </function>',
     "", [("generate_exercise", {"query": "animal grazing question for secondary school students in Tanzania"})]),
    # Llama 3.2, pythonic calls (Meta's prompt-format guide, models/llama3_2/text_prompt_format.md)
    ("llama3", "[get_weather(city='San Francisco', metric='celsius'), get_weather(city='Seattle', metric='celsius')]"
               "<|eot_id|>",
     "", [("get_weather", {"city": "San Francisco", "metric": "celsius"}),
          ("get_weather", {"city": "Seattle", "metric": "celsius"})]),
    # Gemma 4: https://github.com/ml-explore/mlx-lm/issues/1096
    ("gemma4", '<|tool_call>call:get_current_time{timezone:<|"|>Asia/Tokyo<|"|>}<tool_call|>', "",
     [("get_current_time", {"timezone": "Asia/Tokyo"})]),
    # Gemma 4, every kind of value (transformers' tests/utils/test_chat_parsing.py)
    ("gemma4", '<|tool_call>call:foo{bool_value:true,list_value:[<|"|>foo<|"|>,<|"|>bar<|"|>],null_value:null,'
               'number_value:1,string_value:<|"|>foo<|"|>,struct_value:{foo:<|"|>bar<|"|>}}<tool_call|>', "",
     [("foo", {"bool_value": True, "list_value": ["foo", "bar"], "null_value": None, "number_value": 1,
               "string_value": "foo", "struct_value": {"foo": "bar"}})]),
    # Qwen3-Coder-Next, one call and then four: https://github.com/pwilkin/llama.cpp/issues/9
    ("qwen3-coder", "<tool_call>\n<function=bash>\n<parameter=command>\ncd /home/gary/dev/opencode_rs && git status\n"
                    "</parameter>\n<parameter=description>\nCheck git status\n</parameter>\n</function>\n</tool_call>",
     "", [("bash", {"command": "cd /home/gary/dev/opencode_rs && git status", "description": "Check git status"})]),
    ("qwen3-coder", '<tool_call>\n<function=bash>\n<parameter=command>\ntest -d .planning && echo "exists" || echo '
                    '"missing"\n</parameter>\n<parameter=description>\nCheck if planning directory exists\n</parameter>\n'
                    "</function>\n</tool_call>\n<tool_call>\n<function=read>\n<parameter=filePath>\n"
                    "/home/gary/dev/opencode_rs/.planning/STATE.md\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
                    "<function=read>\n<parameter=filePath>\n/home/gary/dev/opencode_rs/.planning/ROADMAP.md\n</parameter>\n"
                    "</function>\n</tool_call>\n<tool_call>\n<function=read>\n<parameter=filePath>\n"
                    "/home/gary/dev/opencode_rs/.planning/PROJECT.md\n</parameter>\n</function>\n</tool_call>",
     "", [("bash", {"command": 'test -d .planning && echo "exists" || echo "missing"',
                    "description": "Check if planning directory exists"}),
          ("read", {"filePath": "/home/gary/dev/opencode_rs/.planning/STATE.md"}),
          ("read", {"filePath": "/home/gary/dev/opencode_rs/.planning/ROADMAP.md"}),
          ("read", {"filePath": "/home/gary/dev/opencode_rs/.planning/PROJECT.md"})]),
    # Qwen3, a JSON array and a Python-style boolean: https://github.com/ggml-org/llama.cpp/issues/21771
    ("qwen3-coder", "<tool_call>\n<function=firecrawl_scrape>\n<parameter=url>\n"
                    "https://thehill.com/opinion/white-house/5784809-trump-era-scandals-shameful-behavior/\n</parameter>\n"
                    '<parameter=formats>\n["markdown"]\n</parameter>\n<parameter=onlyMainContent>\nTrue\n</parameter>\n'
                    "</function>\n</tool_call>",
     "", [("firecrawl_scrape", {"url": "https://thehill.com/opinion/white-house/5784809-trump-era-scandals-shameful-behavior/",
                                "formats": ["markdown"], "onlyMainContent": True})]),
    # Qwen3-Coder-30B-A3B, no opening <tool_call> after its preamble: https://github.com/jundot/omlx/pull/844
    ("qwen3-coder", "I'll check the model information to confirm I'm running on the local oMLX server.\n\n<function=Bash>\n"
                    "<parameter=command>\necho $ANTHROPIC_BASE_URL && echo $ANTHROPIC_DEFAULT_SONNET_MODEL\n</parameter>\n"
                    "</function>\n</tool_call>",
     "I'll check the model information to confirm I'm running on the local oMLX server.\n\n",
     [("Bash", {"command": "echo $ANTHROPIC_BASE_URL && echo $ANTHROPIC_DEFAULT_SONNET_MODEL"})]),
]

MALFORMED = [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tok'),  # cut off
    ("hermes", "<tool_call>\nget_weather(city='Tokyo')\n</tool_call>"),  # not JSON
    ("hermes", '<tool_call>{"arguments": {"city": "Tokyo"}}</tool_call>'),  # no name
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"location": '),
    ("mistral", "[TOOL_CALLS]I think I should call get_weather"),
    ("llama3", '{"name": "get_weather", "parameters": "Paris"}'),  # arguments not an object
    ("gpt-oss", "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{city: Paris}<|call|>"),
    # gpt-oss-20b, arguments one brace short: https://github.com/lmstudio-ai/lmstudio-bug-tracker/issues/942
    ("gpt-oss", '<|start|>assistant<|channel|>commentary to=functions.get_ecs_instructions<|constrain|>json<|message|>'
                '{"data":{"envs":{"sd":{"namespaces":{"main":{"resources":{"requests":{"cpu":"100m","memory":"128Mi"},'
                '"limits":{"cpu":"200m","memory":"256Mi"}}}}},"pr":{"namespaces":{"main":{"resources":{"requests":'
                '{"cpu":"500m","memory":"512Mi"},"limits":{"cpu":"1","memory":"1Gi"}}}}}}}'),
    # Llama 3.1 70B, a stray quote after the arguments: https://github.com/Tanzania-AI-Community/twiga/issues/63
    ("llama3", '<function=get_weather>{"city": "New York"}"</function>'),
    ("llama3", "[get_weather(city=open('/etc/passwd').read())]"),  # pythonic calls take literals only
    # gemma4:e4b, a value opened with ' and closed with <|"|>: https://github.com/ollama/ollama/issues/15315
    ("gemma4", '<|tool_call>call:grep{include:<|"|>*.py<|"|>,output_mode:<|"|>content<|"|>,path:<|"|>'
               '/data/robotics/experiment1<|"|>,pattern:\':\\s*\\w+\'<|"|>}<tool_call|>'),
    ("gemma4", '<|tool_call>call:write{content:<|"|>cut off'),
    ("qwen3-coder", "<tool_call>\n<function=bash>\nls -la\n</function>\n</tool_call>"),  # no <parameter=...>
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
    assert detect("{% if tools %}{{ '<|tool_call>call:' + name }}{% endif %}").name == "gemma4"
    assert detect("{% if tools %}<tool_call>\n<function={{ name }}>\n<parameter={{ k }}>{% endif %}").name == \
        "qwen3-coder"


def test_a_reply_without_calls_is_its_answer():
    # gpt-oss-20b, a garbled header and then its final answer: https://github.com/ggml-org/llama.cpp/issues/27720
    text = ("<|channel|>commentary... The user asks: did the Cubs win yesterday? The sports scores result includes many "
            "games but includes \"Mariners 1 (record 61-68) vs Cubs 0 (record 74-55) - Top 4th at T-Mobile Park\". That "
            "indicates Mariners 1 vs Cubs 0. So Cubs lost. The answer: No, the Cubs lost 0-1 to the Mariners yesterday. "
            "Should also note that the result shows that. Provide answer. No need to call expert. Just state.<|end|>"
            "<|start|>assistant<|channel|>final<|message|>No, the Cubs fell 0–1 to the Mariners in the game on Tuesday.")
    assert FORMATS["gpt-oss"].parse(text) == ("No, the Cubs fell 0–1 to the Mariners in the game on Tuesday.", [])


def test_thinking_then_a_call_splits_into_reasoning_and_the_call():
    """Gemma 4 thinks in its thought channel, then calls (transformers' tests/utils/test_chat_parsing.py)."""
    from lmnb import reasoning

    text = ("<|channel>thought\nThe user is asking for the current temperature in Paris. I should check the available "
            "tools to see if there's a function that can provide this information.<channel|><|tool_call>call:"
            "get_current_temperature{detail_level:0,location:<|\"|>Paris, France<|\"|>,unit:<|\"|>celsius<|\"|>}"
            "<tool_call|><|tool_response>")
    fmt = reasoning.detect("{{ '<|channel>thought' }}{{ '<channel|>' }}")
    assert fmt is not None and fmt.name == "gemma4"
    thought, answer = reasoning.split(text, fmt)
    assert thought.startswith("The user is asking") and thought.endswith("provide this information.")
    content, [call] = FORMATS["gemma4"].parse(answer)
    assert content == "" and call.name == "get_current_temperature"
    assert call.args() == {"detail_level": 0, "location": "Paris, France", "unit": "celsius"}


def test_xml_parameters_are_typed_by_the_tools_schema():
    """Qwen3-Coder writes every value as text: the schema says a "42" stays a string or becomes a number."""
    text = ("<tool_call>\n<function=f>\n<parameter=code>\n42\n</parameter>\n<parameter=n>\n42\n</parameter>\n"
            "<parameter=flag>\nFalse\n</parameter>\n</function>\n</tool_call>")
    schema = {"type": "object", "properties": {"code": {"type": "string"}, "n": {"type": "integer"},
                                               "flag": {"type": "boolean"}}}  # fmt: skip
    p = ToolPlan(FORMATS["qwen3-coder"], [Tool("f", "", schema)], "auto", True, [], None, None)
    _, [call] = p.read(text)
    assert call.args() == {"code": "42", "n": 42, "flag": False}


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
    if any(h.search(text) for h in FORMATS[family].heads):  # JSON arguments stream as they are written
        assert sum(1 for p, before_end in pieces if before_end and p.arguments) > 1
    else:  # other shapes (a JSON string, Gemma 4's syntax, Qwen3-Coder's XML) come whole at the end
        assert all(not before_end for p, before_end in pieces)


def test_the_stage_gives_back_held_text_that_was_not_a_call():
    p = plan([{"role": "user", "content": "x"}], [WEATHER], None)
    pieces = ["Use <", "tool_call> tags, like <tool_call>this</tool_call>."]
    streamed, other, result = _run_stage(ToolCallStage(p), pieces)
    assert streamed == result.text == "".join(pieces) and result.tool_calls is None and other == []
    # a call to a tool that does not exist is text too
    bad = ['<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>']
    streamed, _, result = _run_stage(ToolCallStage(p), bad)
    assert result.tool_calls is None and streamed == result.text == bad[0]
