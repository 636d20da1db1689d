"""The agent frameworks people point at local servers, against `lmnb serve` on the bundled model.

A 135M model's choices are not the point: each framework's requests are accepted, every tool call
it receives is well-formed with arguments its own validation accepts, and each round trip (call,
result, answer) completes. LangChain and instructor are not here: they require openai<3, which
the rest of the test environment has outgrown (constraints.txt)."""

from __future__ import annotations

import pydantic
import pytest

import lmnb

CALLS: list[str] = []


def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: the city's name.
    """
    CALLS.append(city)
    return f"18 degrees and sunny in {city}"


@pytest.fixture(scope="module")
def served(engine):
    srv = lmnb.serve(port=0)
    yield srv
    srv.stop()


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
def test_openai_agents_sdk_runner_with_a_function_tool(served, loaded, api):
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,  # fmt: skip
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # no traces sent to OpenAI
    client = AsyncOpenAI(base_url=served.url, api_key="unused", max_retries=0)
    model_cls = OpenAIChatCompletionsModel if api == "chat_completions" else OpenAIResponsesModel
    agent = Agent(name="weather", instructions="Answer with the tool's help.", tools=[function_tool(get_weather)],
                  model=model_cls(model="smollm2", openai_client=client),
                  model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=300))  # fmt: skip
    CALLS.clear()
    result = Runner.run_sync(agent, "What is the weather in Paris?", max_turns=4)
    assert CALLS and all(isinstance(c, str) and c for c in CALLS)  # the SDK validated and ran the call
    assert isinstance(result.final_output, str) and result.final_output


class City(pydantic.BaseModel):
    name: str
    country: str


def test_pydantic_ai_agent_with_a_tool_and_a_structured_output(served, loaded):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel("smollm2", provider=OpenAIProvider(base_url=served.url, api_key="unused"))
    agent = Agent(model, output_type=City, tools=[get_weather], retries=3,
                  model_settings={"temperature": 0, "max_tokens": 80})  # fmt: skip
    result = agent.run_sync("Which city is the Eiffel Tower in?")
    assert isinstance(result.output, City)  # its final_result tool call validated against City


def test_litellm_completion_with_tools(served, loaded, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of litellm's price list
    import litellm

    tool = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                            "required": ["city"]}}}  # fmt: skip
    r = litellm.completion(model="openai/smollm2", api_base=served.url, api_key="unused", tools=[tool],
                           messages=[{"role": "user", "content": "Weather in Paris?"}], tool_choice="required",
                           max_tokens=60, temperature=0)  # fmt: skip
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and "city" in call.function.arguments
    assert r.choices[0].finish_reason == "tool_calls"
