"""The agent frameworks people point at local servers, against `lmnb serve` on the bundled model.

A 135M model's choices are not the point: each framework's requests are accepted, every tool call
it receives is well-formed with arguments its own validation accepts, and each round trip (call,
result, answer) completes. instructor pins an older openai than the rest of the test environment
(constraints.txt), so it runs in a virtual environment of its own, locked in tests/clients/."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_pydantic_ai_agent_with_a_tool_and_a_structured_output(served, loaded, smollm2_path):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    # its own KV streams (batch_invariant): in the shared cache a greedy reply depends on where
    # earlier tests left cells, and SmolLM2 then sometimes rambles past max_tokens
    lmnb.load(smollm2_path, name="exact", n_ctx=2048, batch_invariant=True)
    try:
        model = OpenAIChatModel("exact", provider=OpenAIProvider(base_url=served.url, api_key="unused"))
        agent = Agent(model, output_type=City, tools=[get_weather], retries=3,
                      model_settings={"temperature": 0, "max_tokens": 80})  # fmt: skip
        result = agent.run_sync("Which city is the Eiffel Tower in?")
        assert isinstance(result.output, City)  # its final_result tool call validated against City
    finally:
        lmnb.unload("exact")


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


def test_langchain_bind_tools_round_trip(served, loaded):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    weather = tool(get_weather)
    llm = ChatOpenAI(model="smollm2", base_url=served.url, api_key="unused", temperature=0, max_tokens=120,
                     max_retries=0)  # fmt: skip
    messages = [HumanMessage("What is the weather in Paris?")]
    ai = llm.bind_tools([weather], tool_choice="get_weather").invoke(messages)
    [call] = ai.tool_calls  # LangChain parsed our tool_calls into its own structure
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    assert not ai.invalid_tool_calls
    CALLS.clear()
    result = weather.invoke(call)  # a ToolMessage carrying the call's id
    assert isinstance(result, ToolMessage) and CALLS == [call["args"]["city"]]
    answer = llm.bind_tools([weather]).invoke([*messages, ai, result])  # the history with the call and its result
    assert not answer.invalid_tool_calls and (answer.content or answer.tool_calls)  # an answer, or another call


def test_langchain_with_structured_output_by_function_calling(served, loaded):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="smollm2", base_url=served.url, api_key="unused", temperature=0, max_tokens=120,
                     max_retries=0)  # fmt: skip
    city = llm.with_structured_output(City, method="function_calling").invoke("Which city is the Eiffel Tower in?")
    assert isinstance(city, City) and city.name and city.country  # parsed from a forced call to the schema


CLIENTS = Path(__file__).parent / "clients"


def _instructor_python() -> Path:
    """A virtual environment with the locked instructor set, made once per lock file and reused."""
    lock = CLIENTS / "instructor-lock.txt"
    key = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    venv = cache / "lmnb-tests" / f"instructor-{key}"
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(lock)],
                       check=True, timeout=600)  # fmt: skip
        (venv / "ready").touch()  # written last: an interrupted install is redone, not half-used
    return python


@pytest.mark.timeout(900)
def test_instructor_tools_mode(served, loaded):
    out = subprocess.run([str(_instructor_python()), str(CLIENTS / "instructor_tools.py"), served.url],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    city = json.loads(out.stdout.strip().splitlines()[-1])
    assert city["type"] == "City" and city["name"] and city["country"]
