"""Tool calling through the server with the official `openai` client, on the bundled model (whose
template has no tools: lmnb's fallback). A 135M model's choices are not the point: every call is
well-formed with arguments valid against its schema, and every round trip completes."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name"},
                           "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now in a time zone.",
                                         "parameters": {"type": "object", "properties": {"tz": {"type": "string"}},
                                                        "required": ["tz"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}


def assert_valid_calls(message, names=("get_weather", "get_time")):
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call.type == "function" and call.id and call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_required_gives_well_formed_calls(client):
    r = client.chat.completions.create(model="", messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                                       temperature=0, max_tokens=80)
    assert r.choices[0].finish_reason == "tool_calls"
    assert_valid_calls(r.choices[0].message)


def test_a_named_tool_is_the_one_called(client):
    r = client.chat.completions.create(model="", messages=ASK, tools=[WEATHER, TIME], temperature=0.8, seed=3,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}},
                                       max_tokens=60)  # fmt: skip
    assert_valid_calls(r.choices[0].message, names=("get_time",))
    assert len(r.choices[0].message.tool_calls) == 1


def test_streamed_calls_assemble_to_the_same_call(client):
    kw = dict(model="", messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0.7, seed=11, max_tokens=80)
    whole = client.chat.completions.create(**kw).choices[0].message
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(stream=True, **kw):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for d in choice.delta.tool_calls or []:
            c = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            c["id"] += d.id or ""
            c["name"] += (d.function.name or "") if d.function else ""
            c["arguments"] += (d.function.arguments or "") if d.function else ""
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == \
        [(c.function.name, c.function.arguments) for c in whole.tool_calls]


def test_auto_answers_in_text_or_with_a_valid_call_and_none_ignores_tools(client):
    for seed in range(3):
        r = client.chat.completions.create(model="", messages=ASK, tools=[WEATHER], temperature=1.0, seed=seed,
                                           max_tokens=40)  # fmt: skip
        msg = r.choices[0].message
        if msg.tool_calls:
            assert r.choices[0].finish_reason == "tool_calls"
            assert_valid_calls(msg)
        else:
            assert msg.content and "<tool_call>" not in msg.content
    plain = client.chat.completions.create(model="", messages=ASK, temperature=0, max_tokens=12, seed=1)
    none = client.chat.completions.create(model="", messages=ASK, tools=[WEATHER], tool_choice="none",
                                          temperature=0, max_tokens=12, seed=1)  # fmt: skip
    assert none.choices[0].message.content == plain.choices[0].message.content  # the tools are left out
    assert none.choices[0].message.tool_calls is None


def test_a_round_trip_with_the_tool_result(client):
    first = client.chat.completions.create(model="", messages=ASK, tools=[WEATHER], tool_choice="required",
                                           temperature=0, max_tokens=80)  # fmt: skip
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    second = client.chat.completions.create(model="", messages=history, tools=[WEATHER], tool_choice="none",
                                            temperature=0, max_tokens=30)  # fmt: skip
    assert second.choices[0].message.content and second.choices[0].finish_reason in ("stop", "length")
    # the same history without tools (a client that dropped them) is accepted too
    third = client.chat.completions.create(model="", messages=history, temperature=0, max_tokens=5)
    assert third.choices[0].message.content is not None


def test_bad_tool_requests_get_clear_400s(client):
    with pytest.raises(openai.BadRequestError, match="not among the tools"):
        client.chat.completions.create(model="", messages=ASK, tools=[WEATHER],
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(openai.BadRequestError, match="tool_choice needs tools"):
        client.chat.completions.create(model="", messages=ASK, tool_choice="required")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="", messages=ASK, tools=[{"type": "function", "function": {"name": "a b"}}])
    with pytest.raises(openai.BadRequestError, match="same name"):
        client.chat.completions.create(model="", messages=ASK, tools=[WEATHER, WEATHER])
    ok = client.chat.completions.create(model="", messages=ASK, max_tokens=2)  # the server goes on
    assert ok.choices[0].message.content is not None
