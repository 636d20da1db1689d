"""The Chat pane, from Python: what reaches the front end, and the shared conversation.

Every reply comes from the real SmolLM2 model. The front end's own behaviour (Markdown, the
sanitizer, Enter/Stop in a browser) is checked in tests/browser/test_studio.py.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from IPython.utils.capture import capture_output

import lmnb
from lmnb.errors import LmnbError
from lmnb.sources.library import bundled_model
from lmnb.widgets.chat import Chat


class Recorder:
    """Stands in for the comm: keeps the custom messages a Chat sends to its views."""

    def __init__(self, chat: Chat) -> None:
        self.sent: list[dict] = []
        self.lock = threading.Lock()
        chat.send = self.record  # type: ignore[method-assign]

    def record(self, content, buffers=None) -> None:
        with self.lock:
            self.sent.append(content)

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [m for m in self.sent if m["type"] == kind]


@pytest.fixture
def chat(loaded):
    lmnb.reset()
    c = Chat(temperature=0, max_tokens=24)
    yield c
    c.close()
    lmnb.reset()


def test_reply_streams_as_small_token_messages(chat):
    rec = Recorder(chat)
    chat.ask("Name three colours.")
    assert chat.busy
    result = chat.wait(60)
    assert not chat.busy
    tokens = rec.of("token")
    assert [m["type"] for m in rec.sent][0] == "start" and rec.sent[-1]["type"] == "end"
    # the deltas add up to the reply, and no message carries the whole text so far
    assert "".join(m["text"] for m in tokens) == result.text
    assert len(tokens) >= 3
    assert max(len(m["text"]) for m in tokens) < len(result.text)
    reply = chat.messages[-1]
    assert reply["role"] == "assistant" and reply["content"] == result.text
    stats = reply["stats"]
    assert stats["tokens"] == result.usage.completion_tokens > 0
    assert stats["tokens_per_s"] > 0 and stats["ttft_s"] > 0
    assert stats["finish_reason"] == result.finish_reason


def test_shares_history_with_chat_cells(chat, shell):
    chat.ask("My name is Ada.")
    chat.wait(60)
    assert [m["role"] for m in lmnb.conversation().messages] == ["user", "assistant"]
    with capture_output():
        shell.run_cell_magic("lm", "chat -n 8 --temperature 0", "What is my name?")
    # the cell's turn shows in the widget, after the widget's own turn
    assert [m["content"] for m in chat.messages if m["role"] == "user"] == ["My name is Ada.", "What is my name?"]
    # and the cell's prompt contained the widget's turn
    prompt = lmnb.history(last=1)["messages"].iloc[-1]
    assert "My name is Ada." in prompt


def test_stop_cancels_within_about_a_token(chat):
    rec = Recorder(chat)
    # SmolLM2's end-of-generation tokens are banned, so the reply runs to 400 tokens: from an empty
    # cache its greedy answer is 13 tokens, which can end before the Stop arrives
    no_end = {t: -100 for t in (0, 2, 4)}  # <|endoftext|>, <|im_end|>, <reponame>
    chat.params = {"temperature": 0, "max_tokens": 400, "logit_bias": no_end}
    chat.ask("Count from 1 to 300, separated by commas.")
    deadline = time.monotonic() + 30
    while len(rec.of("token")) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    streamed_before = len("".join(m["text"] for m in rec.of("token")))
    t0 = time.perf_counter()
    chat._on_front_end(chat, {"type": "stop"}, None)  # what the Stop button sends
    result = chat.wait(10)
    waited = time.perf_counter() - t0
    assert result.finish_reason == "cancelled"
    assert not chat.busy
    # the worker checks for a cancel before every decode step: at most a token or two more
    assert result.usage.completion_tokens < 60
    assert len(result.text) - streamed_before < 40
    assert waited < 1.0
    # the partial reply is kept, marked as stopped
    assert chat.messages[-1]["content"] == result.text
    assert chat.messages[-1]["stats"]["finish_reason"] == "cancelled"


def test_front_end_messages_drive_the_chat(chat):
    rec = Recorder(chat)
    chat._on_front_end(chat, {"type": "send", "text": "Say yes."}, None)
    first = chat.wait(60)
    chat._on_front_end(chat, {"type": "regenerate"}, None)
    second = chat.wait(60)
    # regenerate replaces the last reply instead of adding a turn
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]
    assert chat.messages[-1]["content"] == second.text
    assert first.request_id != second.request_id
    chat._on_front_end(chat, {"type": "clear"}, None)
    assert chat.messages == [] and lmnb.conversation().messages == []
    assert rec.of("end")


def test_view_opened_mid_reply_gets_the_text_so_far(chat):
    rec = Recorder(chat)
    chat.params = {"temperature": 0, "max_tokens": 200}
    chat.ask("Count from 1 to 100.")
    while len(rec.of("token")) < 3:
        time.sleep(0.005)
    chat._on_front_end(chat, {"type": "hello"}, None)
    chat.stop()
    chat.wait(10)
    sync = rec.of("sync")
    assert sync and sync[0]["text"] and chat.messages[-1]["content"].startswith(sync[0]["text"])


def test_errors_are_shown_and_the_message_given_back(chat, smollm2_path):
    rec = Recorder(chat)
    lmnb.unload()
    try:
        assert chat.model_name == ""
        chat._on_front_end(chat, {"type": "send", "text": "hello?"}, None)
        assert "No model is loaded" in chat.status
        assert rec.sent[-1] == {"type": "restore", "text": "hello?"}
        assert chat.messages == [] and not chat.busy
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)
    # the header follows loads made elsewhere
    assert chat.model_name == lmnb.status().model.name
    with pytest.raises(ValueError):
        chat.ask("   ")


def test_one_reply_at_a_time(chat):
    chat.params = {"temperature": 0, "max_tokens": 200}
    chat.ask("Count from 1 to 100.")
    with pytest.raises(LmnbError, match="still being generated"):
        chat.ask("And another?")
    chat.stop()
    chat.wait(10)
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]


def test_system_prompt_and_python_edits_reach_the_conversation(chat):
    chat.system_prompt = "You answer in French."
    assert lmnb.conversation().system == "You answer in French."
    chat.ask("Hello")
    chat.wait(60)
    prompt = lmnb.history(last=1)["messages"].iloc[-1]
    assert "You answer in French." in prompt
    chat.messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Bonjour"}]
    assert [m["content"] for m in lmnb.conversation().messages] == ["Hi", "Bonjour"]
    lmnb.reset()
    assert chat.messages == []


def test_long_prompts_report_reading_progress(chat):
    rec = Recorder(chat)
    chat.params = {"temperature": 0, "max_tokens": 2}
    chat.ask("Summarise: " + "The river runs to the sea and the sea is wide. " * 120)  # ~1300 tokens
    chat.wait(120)
    progress = rec.of("progress")
    assert len(progress) >= 2  # n_batch is 512, so the prompt takes three steps
    done = [m["done"] for m in progress]
    assert done == sorted(done) and done[-1] == progress[-1]["total"] > 1000


def test_unknown_sampling_parameter_is_refused(loaded):
    with pytest.raises(TypeError, match="temprature"):
        Chat(temprature=0.5)


def test_closed_chat_stops_following_the_conversation(loaded):
    c = Chat()
    conv = lmnb.conversation()
    assert c._on_conversation in conv.listeners
    assert c._on_model in lmnb.api.registry().listeners
    c.close()
    assert c._on_conversation not in conv.listeners
    assert c._on_model not in lmnb.api.registry().listeners


def test_javascript_is_bundled_not_fetched(loaded):
    c = Chat()
    try:
        esm = c._esm
        assert "lmnb-chat" in esm and len(esm) > 50_000
        # no module is loaded from a URL at run time (users may be offline)
        assert not re.search(r"""(?:from|import)\s*\(?\s*["']https?://""", esm)
    finally:
        c.close()


def test_model_picker_sends_to_the_chosen_model(chat):
    smol = lmnb.status().model.name
    assert chat.model == "default" and chat.model_name == smol
    assert chat.models == [{"name": "default", "label": smol, "model": smol}]
    lmnb.load(bundled_model("gemma3"), name="g", n_ctx=1024)
    try:
        # loaded elsewhere: the picker lists it (the registry's listeners), under its name
        assert [m["name"] for m in chat.models] == ["default", "g"]
        gemma = chat.models[1]["model"]
        assert gemma.startswith("gemma-3-270m") and chat.models[1]["label"] == "g"
        assert chat.model_name == smol  # still the default model's

        chat.model = "g"  # what the picker sets
        assert chat.model_name == gemma  # the header names the chosen model
        chat._on_front_end(chat, {"type": "send", "text": "Say yes."}, None)
        result = chat.wait(120)
        assert result.model == gemma
        assert lmnb.history(last=1)["model"].iloc[-1] == gemma
        assert chat.messages[-1]["role"] == "assistant" and chat.messages[-1]["content"] == result.text

        # the same conversation goes on with the default model
        chat.model = "default"
        assert chat.model_name == smol
        chat.ask("And now?")
        assert chat.wait(60).model == smol
        assert lmnb.history(last=1)["model"].iloc[-1] == smol

        # the chosen model unloaded: the default model answers, and the widget says so
        chat.model = "g"
        lmnb.unload("g")
        assert chat.model == "default" and chat.model_name == smol
        assert "No model is loaded as 'g'" in chat.status
        assert [m["name"] for m in chat.models] == ["default"]
    finally:
        lmnb.unload("g")


def test_chat_with_a_named_model_from_python(loaded):
    lmnb.reset("picker")
    lmnb.load(bundled_model("gemma3"), name="g", n_ctx=1024)
    c = Chat("picker", model="g", temperature=0, max_tokens=8)
    try:
        assert c.model == "g" and c.model_name.startswith("gemma-3-270m")
        c.ask("Hi")
        assert c.wait(120).model == c.model_name
    finally:
        c.close()
        lmnb.unload("g")
        lmnb.reset("picker")
    # a name nothing is loaded under: the default model, with a notice
    c = Chat(model="nope")
    try:
        assert c.model == "default" and "No model is loaded as 'nope'" in c.status
        assert c.model_name == lmnb.status().model.name
    finally:
        c.close()


WEATHER_CALLS: list[str] = []


def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: the city's name.
    """
    WEATHER_CALLS.append(city)
    return f"18 degrees and sunny in {city}"


def test_tools_in_the_pane_run_show_each_step_and_can_be_switched_off(loaded):
    lmnb.reset("panetools")
    chat = Chat("panetools", tools=[get_weather], tool_choice="required", temperature=0, max_tokens=60)
    rec = Recorder(chat)
    try:
        assert chat.tools == [{"name": "get_weather", "description": "The current weather in a city.", "enabled": True}]
        WEATHER_CALLS.clear()
        chat.ask("What is the weather in Paris?")
        result = chat.wait(120)
        assert WEATHER_CALLS and result.steps  # the call ran in the kernel
        [step] = rec.of("tool_step")[:1]
        assert step["name"] == "get_weather" and step["output"].startswith("18 degrees") and step["seconds"] >= 0
        kinds = [m["type"] for m in rec.sent]
        assert kinds[0] == "start" and kinds[-1] == "end" and kinds.index("tool_step") < kinds.index("end")
        assert kinds.count("round") == 2  # the call, then the answer: each request streamed in turn
        assert "".join(m["text"] for m in rec.of("token")).endswith(result.text)
        roles = [m["role"] for m in chat.messages]
        assert roles == ["user", "assistant", "tool", "assistant"]  # kept in the conversation
        chat._on_front_end(chat, {"type": "tool_toggle", "name": "get_weather", "enabled": False}, [])
        assert chat.tools[0]["enabled"] is False
        WEATHER_CALLS.clear()
        rec.sent.clear()
        chat.ask("Thanks!")
        chat.wait(120)
        assert not WEATHER_CALLS and not rec.of("tool_step") and not rec.of("round")  # a plain reply
    finally:
        chat.close()
        lmnb.reset("panetools")


def test_stop_during_a_turn_with_tools(loaded):
    lmnb.reset("panestop")
    started = threading.Event()

    def slow(city: str) -> str:
        """Looks a city up."""
        started.set()
        chat.stop()  # pressed while the tool runs: the loop must not ask the model again
        return "cloudy"

    chat = Chat("panestop", tools=[slow], tool_choice="required", temperature=0, max_tokens=60)
    rec = Recorder(chat)
    try:
        chat.ask("Look up Paris.")
        chat.wait(120)
        assert started.is_set() and not chat.busy
        assert rec.sent[-1]["type"] == "end"
        assert lmnb.history(last=1).iloc[-1]["finish_reason"] == "cancelled"  # the answer was cancelled at once
    finally:
        chat.close()
        lmnb.reset("panestop")


def test_thinking_streams_into_the_pane(smollm2_path):
    from .test_reasoning import THINK_TEMPLATE

    lmnb.load(smollm2_path, n_ctx=2048, chat_template=THINK_TEMPLATE, name="panethinker")
    chat = Chat("panethink", model="panethinker", temperature=0, max_tokens=60, reasoning_budget=12)
    rec = Recorder(chat)
    try:
        chat.ask("What is 2+3?")
        result = chat.wait(120)
        thinking = "".join(m["text"] for m in rec.of("thinking"))
        assert thinking.strip() and thinking.strip() == result.reasoning.strip()
        assert "<think>" not in "".join(m["text"] for m in rec.of("token"))
        kinds = [m["type"] for m in rec.sent]
        assert kinds.index("thinking") < kinds.index("end")  # while it streamed, not after
        assert chat.messages[-1].get("reasoning")
    finally:
        chat.close()
        lmnb.unload("panethinker")
        lmnb.reset("panethink")


def test_document_library_picker(chat, tmp_path, monkeypatch):
    from lmnb.config import get_config

    from .docs_files import write_text

    monkeypatch.setattr(get_config(), "docs_dir", str(tmp_path / "libraries"))
    rec = Recorder(chat)
    chat._on_front_end(chat, {"type": "libraries"}, None)  # the picker got focus
    assert chat.libraries == []
    write_text(tmp_path / "memo.txt", "The ferry leaves at nine.\n")
    lmnb.docs.add("memos", str(tmp_path / "memo.txt"), progress=False)
    chat._on_front_end(chat, {"type": "libraries"}, None)
    assert chat.libraries == ["memos"]
    chat.docs = "memos"
    assert chat.status == ""
    chat.ask("When does the ferry leave?")
    result = chat.wait(60)
    assert [s["where"] for s in chat.messages[-1]["sources"]] == ["memo.txt line 1"] == [
        s["where"] for s in result.sources]  # fmt: skip
    # a library removed meanwhile: said in the status line, the message given back
    lmnb.docs.remove("memos")
    chat._on_front_end(chat, {"type": "send", "text": "And on Sundays?"}, None)
    assert "no document library named 'memos'" in chat.status and not chat.busy
    assert rec.sent[-1] == {"type": "restore", "text": "And on Sundays?"}
    chat.docs = "not a name!"
    assert chat.docs == "" and "library name" in chat.status
