"""Python functions as tools in the kernel: `lmnb.chat(tools=...)` and `%%lm chat --tools`, on the
bundled model. Calls run here, their results go back to the model, errors inside a tool become its
result, and every step is kept in the conversation."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from IPython.utils.capture import capture_output

import lmnb

from .waiting import wait_for

CALLS: list[dict] = []


def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: the city's name.
    """
    CALLS.append({"city": city})
    return f"18 degrees and sunny in {city}"


def broken(city: str) -> str:
    """Always fails (a tool with a bug)."""
    raise RuntimeError(f"the weather service is down for {city}")


Q = "What is the weather in Paris?"


def test_a_forced_call_runs_in_the_kernel_and_the_model_answers(loaded):
    CALLS.clear()
    steps = []
    r = lmnb.chat(Q, tools=[get_weather], tool_choice="required", max_steps=1, temperature=0, max_tokens=40,
                  on_step=steps.append)  # fmt: skip
    assert len(CALLS) >= 1 and all(isinstance(c["city"], str) for c in CALLS)
    assert [s.call.name for s in r.steps] == ["get_weather"] * len(CALLS) and steps == r.steps
    assert r.steps[0].output.startswith("18 degrees and sunny in ") and r.steps[0].error is None
    assert r.tool_calls is None and r.finish_reason in ("stop", "length")  # the answer, without tools


def test_an_exception_in_a_tool_goes_back_to_the_model(loaded):
    r = lmnb.chat(Q, tools=[broken], tool_choice="required", max_steps=1, temperature=0, max_tokens=60)
    step = r.steps[0]
    assert step.error.startswith("RuntimeError: the weather service is down")
    assert step.output.startswith("Error: RuntimeError:")


def test_confirm_can_decline_a_call(loaded):
    CALLS.clear()
    asked = []
    r = lmnb.chat(Q, tools=[get_weather], tool_choice="required", max_steps=1, temperature=0, max_tokens=60,
                  confirm=lambda call: asked.append(call.name) or False)  # fmt: skip
    assert asked and CALLS == [] and all(s.declined for s in r.steps)


def test_the_steps_are_kept_in_the_conversation(loaded):
    lmnb.reset("tools")
    r = lmnb.chat(Q, conversation="tools", tools=[get_weather], tool_choice="required", max_steps=1,
                  temperature=0, max_tokens=60)  # fmt: skip
    msgs = lmnb.conversation("tools").messages
    roles = [m["role"] for m in msgs]
    assert roles[0] == "user" and roles[1] == "assistant" and msgs[1]["tool_calls"]
    assert roles[2:2 + len(r.steps)] == ["tool"] * len(r.steps) and roles[-1] == "assistant"
    assert msgs[2]["tool_call_id"] == msgs[1]["tool_calls"][0]["id"]
    assert msgs[-1]["content"] == r.text
    # the next turn sees the whole exchange (rendered as text for this template)
    nxt = lmnb.chat("Thanks. And in Oslo?", conversation="tools", max_tokens=4, temperature=0)
    assert nxt.usage.prompt_tokens > 60
    lmnb.reset("tools")


def test_the_cell_magic_shows_each_step(shell):
    shell.user_ns["get_weather"] = get_weather
    with capture_output() as cap:
        shell.run_cell_magic("lm", "chat --name toolcell --tools get_weather --tool-choice required --max-steps 1 -t 0 -n 60 -o answer",
                             Q + " Use the tool.")  # fmt: skip
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert "lmnb-tool-step" in html and "get_weather(" in html
    assert isinstance(shell.user_ns["answer"], str)
    with pytest.raises(Exception, match="not a function"):
        shell.run_cell_magic("lm", "chat --tools nope", Q)
    lmnb.reset("toolcell")


def test_ctrl_c_while_the_model_answers_keeps_the_steps(shell):
    """SIGINT (what "Interrupt kernel" sends) after a call ran, while the model writes its answer:
    the cell stops at once, the call is not run again, and the call and its result stay in the
    conversation; the model serves the next cell."""
    ran = threading.Event()

    def get_weather(city: str) -> str:
        """The current weather in a city."""
        ran.set()
        return f"18 degrees and sunny in {city}"

    engine = lmnb.get_engine()

    def interrupt() -> None:  # once the answer is under way, whatever the machine's speed
        assert ran.wait(300)
        start = engine.tokens_generated
        wait_for(lambda: engine.tokens_generated >= start + 8, timeout=300)
        os.kill(os.getpid(), signal.SIGINT)

    shell.user_ns["get_weather"] = get_weather
    lmnb.reset("stopped")
    threading.Thread(target=interrupt, daemon=True).start()
    with capture_output() as cap:
        r = shell.run_cell("%%lm chat --name stopped --tools get_weather --tool-choice required --max-steps 1 -t 0 "
                           "-n 3000\nWhat is the weather in Paris? Then write a very long essay about the history "
                           "of Rome.")  # fmt: skip
    assert isinstance(r.error_in_exec, KeyboardInterrupt)
    assert "[interrupted after 1 tool call(s)]" in "".join(o.data.get("text/plain", "") for o in cap.outputs)
    assert lmnb.history(last=1).iloc[-1]["finish_reason"] == "cancelled"  # the answer's generation stopped
    roles = [m["role"] for m in lmnb.conversation("stopped").messages]
    assert roles == ["user", "assistant", "tool"]  # the question, the call and its result are kept
    r = shell.run_cell("%%lm chat --name stopped -t 0 -n 8\nThanks.")
    assert r.success
    lmnb.reset("stopped")


def test_ctrl_c_inside_a_tool_stops_the_run(shell):
    """An interrupt that lands while a tool runs is the user's: it is not turned into the tool's
    result, the model is not asked again, and the engine is left idle and working."""
    calls: list[str] = []

    def slow_lookup(city: str) -> str:
        """Looks a city up in a slow service."""
        calls.append(city)
        os.kill(os.getpid(), signal.SIGINT)  # the user presses stop while the tool runs
        threading.Event().wait(60)  # pragma: no cover - the interrupt lands here
        return "never"

    shell.user_ns["slow_lookup"] = slow_lookup
    before = len(lmnb.history())
    with capture_output():
        r = shell.run_cell("%%lm chat --tools slow_lookup --tool-choice required -t 0 -n 60\nLook up Paris.")
    assert isinstance(r.error_in_exec, KeyboardInterrupt)
    assert len(calls) == 1
    assert len(lmnb.history()) == before + 1  # only the request that made the call: no second one
    r = shell.run_cell("%%lm -t 0 -n 4\nStill there?")
    assert r.success
