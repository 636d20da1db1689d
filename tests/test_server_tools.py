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
    finish, pieces = None, 0
    for chunk in client.chat.completions.create(stream=True, **kw):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for d in choice.delta.tool_calls or []:
            pieces += 1
            c = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            c["id"] += d.id or ""
            c["name"] += (d.function.name or "") if d.function else ""
            c["arguments"] += (d.function.arguments or "") if d.function else ""
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == \
        [(c.function.name, c.function.arguments) for c in whole.tool_calls]
    assert all(c["id"].startswith("call_") for c in calls.values())  # ids are new in each reply
    assert pieces > 2 * len(calls)  # the arguments came while they were written, not whole at the end


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


# ---- /v1/responses ---------------------------------------------------------------------------
FLAT = {"type": "function", **WEATHER["function"]}  # the Responses API's tool shape


def test_responses_text_call_and_round_trip(client):
    r = client.responses.create(model="", input="Say hi.", max_output_tokens=200, temperature=0)
    assert r.status == "completed" and r.output_text and r.usage.output_tokens > 0
    short = client.responses.create(model="", input="Tell a long story.", max_output_tokens=5, temperature=0)
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"

    r = client.responses.create(model="", input=ASK[0]["content"], tools=[FLAT], tool_choice="required",
                                max_output_tokens=80, temperature=0)  # fmt: skip
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and all(c.name == "get_weather" and c.call_id for c in calls)
    for c in calls:
        jsonschema.validate(json.loads(c.arguments), SCHEMAS["get_weather"])
    follow = [{"role": "user", "content": ASK[0]["content"]}, calls[0].model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 degrees and sunny"}]
    r2 = client.responses.create(model="", input=follow, tools=[FLAT], tool_choice="none", max_output_tokens=30,
                                 temperature=0, instructions="Answer in one sentence.")  # fmt: skip
    assert r2.output_text and not [o for o in r2.output if o.type == "function_call"]


def test_responses_stream_events_assemble_to_the_same_output(client):
    kw = dict(model="", input=ASK[0]["content"], tools=[FLAT], tool_choice="required", max_output_tokens=80,
              temperature=0.7, extra_body={"seed": 4})
    whole = client.responses.create(**kw)
    with client.responses.stream(**kw) as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(deltas) > len(done) > 0  # streamed in pieces
    assert ["".join(d.delta for d in deltas if d.item_id == e.item_id) for e in done] == [e.arguments for e in done]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.done" in kinds
    assert [(o.name, o.arguments) for o in final.output if o.type == "function_call"] == \
        [(o.name, o.arguments) for o in whole.output if o.type == "function_call"]
    text = ""
    for e in client.responses.create(model="", input="Say hi.", max_output_tokens=12, temperature=0, stream=True):
        if e.type == "response.output_text.delta":
            text += e.delta
        last = e
    assert last.type in ("response.completed", "response.incomplete") and text == last.response.output_text


def test_responses_refuses_what_needs_storage(client):
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        client.responses.create(model="", input="Hi", previous_response_id="resp_123")
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.responses.create(model="", input=[{"type": "computer_call", "id": "x"}])
