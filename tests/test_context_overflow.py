"""``context_overflow`` (issue 18, part 4): a chat longer than the context keeps going.

On the real SmolLM2, loaded with a 256-token context: the first turn of a long conversation holds a
fact (the secret word), filler turns after it push the chat past the context. Each policy in a
``%%lm chat`` cell, through ``lmnb.chat`` and through the server with the ``openai`` client:
``stop`` is the clear error and leaves everything working, ``truncate_middle`` keeps the first
turn, ``rolling_window`` drops it, and the number of messages left out is reported. Which
messages were rendered is checked exactly: the prompt's token count equals that of the expected
selection, found here the slow way (one turn more at a time).
"""

from __future__ import annotations

import pytest

import lmnb
from lmnb.engine.overflow import fit, reply_room, turns
from lmnb.errors import ContextOverflow

from .conftest import final_reply, run_cell

CTX = 256
SYSTEM = "Answer in a few words."
SECRET = "PELICAN"
ASK = "What is my secret word?"
MAX_TOKENS = 12  # the reply's room: the prompt may use CTX - 12 tokens
CHAT = "overflow"


def _history(n_filler: int = 8) -> list[dict]:
    out = [{"role": "user", "content": f"My secret word is {SECRET}. Remember it."},
           {"role": "assistant", "content": f"Noted: {SECRET}."}]  # fmt: skip
    for i in range(n_filler):
        out += [{"role": "user", "content": f"Tell me fact number {i} about rivers."},
                {"role": "assistant", "content": f"Fact {i}: rivers carry water from the mountains to the sea."}]  # fmt: skip
    return out


def _chat_messages() -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, *_history(), {"role": "user", "content": ASK}]


def _expected(eng, messages: list[dict], policy: str) -> tuple[int, int]:
    """(messages left out, prompt tokens) under ``policy``: whole user/assistant turns, oldest first
    (after the first turn for truncate_middle), one more at a time until the prompt and the reply fit."""
    system, first, rest, last = messages[:1], messages[1:3], messages[3:-1], messages[-1:]
    keep_first = policy == "truncate_middle"
    if not keep_first:
        rest, first = first + rest, []
    for k in range(0, len(rest) + 1, 2):
        n = len(eng.tokenize(eng.render_chat(system + first + rest[k:] + last)))
        if n + MAX_TOKENS <= CTX:
            return k, n
    raise AssertionError("the last turn alone does not fit")


@pytest.fixture
def small(shell, smollm2_path):
    """SmolLM2 with a 256-token context (the session's 2048 after), and a long conversation."""
    lmnb.load(smollm2_path, n_ctx=CTX)
    conv = lmnb.conversation(CHAT)
    conv.system = SYSTEM
    conv.replace(_history())
    try:
        yield lmnb.get_engine()
    finally:
        lmnb.configure(context_overflow="stop")
        conv.system = None
        lmnb.reset(CHAT)
        lmnb.load(smollm2_path, n_ctx=2048)


# ---- the policy itself, on made-up token counts ----------------------------------------------------
def _count(messages: list[dict]) -> list[int]:
    """One token per character of content: enough to see which messages were kept."""
    return [0] * sum(len(m.get("content") or "") + 1 for m in messages)


def _fit(messages: list[dict], policy: str, budget: int) -> tuple[list[int], int]:
    return fit(messages, _count, _count(messages), policy, budget + 1, 1)


def test_turns_keep_tool_calls_with_their_results():
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "function": {"name": "f"}}]}
    messages = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "q1"}, call, {"role": "tool", "content": "r"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2"}, {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
                {"role": "user", "content": "<tool_response>\nr\n</tool_response>"},  # a result, written as text
                {"role": "assistant", "content": "a2"}, {"role": "user", "content": "q3"}]  # fmt: skip
    head, spans = turns(messages)
    assert head == 1 and [list(s) for s in spans] == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]
    full = len(_count(messages))
    # rolling_window: the greeting, then the first tool turn go, whole
    assert _fit(messages, "rolling_window", full - 1)[1] == 1
    assert _fit(messages, "rolling_window", full - 7)[1] == 5
    # truncate_middle keeps the greeting and the first user turn, and leaves out the one after them
    kept, dropped = _fit(messages, "truncate_middle", full - 1)
    assert dropped == 4 and len(kept) == full - len(_count(messages[6:10]))


def test_the_fewest_turns_go_the_last_always_stays_and_stop_drops_nothing():
    messages = [{"role": "system", "content": "s" * 10}]
    for _ in range(20):
        messages += [{"role": "user", "content": "u" * 10}, {"role": "assistant", "content": "a" * 10}]
    messages.append({"role": "user", "content": "last" * 10})
    full = len(_count(messages))
    assert _fit(messages, "stop", 50) == (_count(messages), 0)
    assert _fit(messages, "rolling_window", full)[1] == 0  # it fits: nothing goes
    for budget in (full - 1, full - 22, full - 23, 200, 100):
        kept, dropped = _fit(messages, "rolling_window", budget)
        assert len(kept) <= budget and len(kept) + 22 > budget and dropped % 2 == 0
    # truncate_middle: when the first turn and the last are still too long, the first goes too
    kept, dropped = _fit(messages, "truncate_middle", 60)
    assert dropped == 40 and len(kept) == 11 + 41
    # too long even alone: all earlier turns go, and the caller sees it still does not fit
    kept, dropped = _fit(messages, "rolling_window", 30)
    assert dropped == 40 and len(kept) == 52
    with pytest.raises(ValueError, match="one of stop, truncate_middle, rolling_window"):
        _fit(messages, "middle", 30)


def test_the_reply_room_is_max_tokens_at_most_half_the_context():
    assert reply_room(4096, 200) == 200
    assert reply_room(4096, -1) == 512
    assert reply_room(512, 1024) == 256


# ---- the real model, on every surface ----------------------------------------------------------------
def test_each_policy_in_a_chat_cell(small, shell):
    conv = lmnb.conversation(CHAT)
    before = conv.snapshot()
    r, cap = run_cell(shell, f"chat --name {CHAT} -t 0 -n {MAX_TOKENS}", ASK)
    shown = cap.stderr + cap.stdout + str(r.error_in_exec)
    assert not r.success and "the context holds 256" in shown and "context_overflow" in shown, shown
    assert conv.snapshot() == before  # nothing appended, nothing lost

    # the session's setting (%lm set), then the cell's flag
    shell.run_line_magic("lm", "set context_overflow=truncate_middle")
    assert lmnb.get_config().context_overflow == "truncate_middle"
    for flag, policy in (("", "truncate_middle"), ("--context-overflow rolling_window", "rolling_window")):
        dropped, n_tokens = _expected(small, conv.all_messages() + [{"role": "user", "content": ASK}], policy)
        r, cap = run_cell(shell, f"chat --name {CHAT} {flag} -t 0 -n {MAX_TOKENS}", ASK)
        assert r.success, r.error_in_exec
        stats = cap.outputs[-1].data["text/plain"]
        assert f"{dropped} earlier messages left out to fit the context" in stats, stats
        assert f"prompt {n_tokens} tokens" in stats, stats
        meta = final_reply(cap).metadata["lmnb"]
        assert meta["dropped_messages"] == dropped and meta["params"]["context_overflow"] == policy
        # the conversation keeps every message (what the chat pane shows, and the stats it shows)
        assert conv.snapshot()[: len(before)] == before and len(conv) == len(before) + 2
        assert conv.messages[-1]["stats"]["dropped_messages"] == dropped
        conv.pop_last_turn()
    assert dropped >= 2  # rolling_window: the first turn went (and as many after it as needed)


def test_each_policy_through_the_python_api(small):
    conv = lmnb.conversation(CHAT)
    n_before = len(conv)
    with pytest.raises(ContextOverflow, match="context holds 256.*context_overflow='rolling_window'"):
        lmnb.chat(ASK, conversation=CHAT, temperature=0, max_tokens=MAX_TOKENS)
    assert len(conv) == n_before
    assert lmnb.chat("Hi", temperature=0, max_tokens=4).text  # everything still works

    messages = conv.all_messages() + [{"role": "user", "content": ASK}]
    middle = lmnb.chat(ASK, conversation=CHAT, context_overflow="truncate_middle", temperature=0,
                       max_tokens=MAX_TOKENS)  # fmt: skip
    assert (middle.dropped_messages, middle.usage.prompt_tokens) == _expected(small, messages, "truncate_middle")
    assert SECRET in middle.text.upper(), middle.text  # the first turn was in the prompt
    conv.pop_last_turn()
    rolling = lmnb.chat(messages, context_overflow="rolling_window", temperature=0, max_tokens=MAX_TOKENS)
    assert (rolling.dropped_messages, rolling.usage.prompt_tokens) == _expected(small, messages, "rolling_window")
    assert SECRET not in rolling.text.upper(), rolling.text  # nothing in the prompt says it
    # the history records the whole conversation the reply was asked in, and the policy
    row = lmnb.history(last=1).iloc[-1]
    assert SECRET in row["messages"] and row["params"]["context_overflow"] == "rolling_window"
    assert len(conv) == n_before


def test_the_chat_pane_says_what_was_left_out(small):
    from lmnb.widgets.chat import Chat

    conv = lmnb.conversation(CHAT)
    before = conv.snapshot()
    dropped, n_tokens = _expected(small, conv.all_messages() + [{"role": "user", "content": ASK}], "rolling_window")
    chat = Chat(CHAT, context_overflow="rolling_window", temperature=0, max_tokens=MAX_TOKENS)
    try:
        chat._on_front_end(chat, {"type": "send", "text": ASK}, None)
        result = chat.wait(120)
        assert (result.dropped_messages, result.usage.prompt_tokens) == (dropped, n_tokens)
        # what the pane shows: every message, and under the reply the count (statsLine in js/src/chat.js)
        assert chat.messages[: len(before)] == before and len(chat.messages) == len(before) + 2
        assert chat.messages[-1]["stats"]["dropped_messages"] == dropped
        assert "left out to fit the context" in chat._esm
    finally:
        chat.close()


def test_a_last_message_too_long_alone_is_the_clear_error(small):
    with pytest.raises(ContextOverflow, match="left out the 18 earlier messages.*the context holds 256"):
        lmnb.chat("word " * 300, conversation=CHAT, context_overflow="rolling_window", max_tokens=4)
    with pytest.raises(ValueError, match="context_overflow='middle': must be one of"):
        lmnb.chat("Hi", context_overflow="middle")
    assert len(lmnb.conversation(CHAT)) == 18
    assert lmnb.chat("Hi", temperature=0, max_tokens=4).text


def test_each_policy_through_the_server(small, client):
    import openai

    messages = _chat_messages()
    ask = dict(model="", messages=messages, temperature=0, max_tokens=MAX_TOKENS)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**ask)  # the session's default: stop
    assert e.value.body["code"] == "context_length_exceeded" and "context_overflow" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError, match="context_overflow"):
        client.chat.completions.create(**ask, extra_body={"context_overflow": "middle"})
    assert client.chat.completions.create(model="", messages=messages[-1:], max_tokens=4).choices[0].message.content

    middle = client.chat.completions.create(**ask, extra_body={"context_overflow": "truncate_middle"})
    expected = _expected(small, messages, "truncate_middle")
    assert (middle.usage.model_extra["dropped_messages"], middle.usage.prompt_tokens) == expected

    # the session's setting is the default of requests that do not say; streamed, the usage says it too
    lmnb.configure(context_overflow="rolling_window")
    stream = client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage][-1]
    assert (usage.model_extra["dropped_messages"], usage.prompt_tokens) == _expected(small, messages, "rolling_window")
    short = client.chat.completions.create(model="", messages=messages[-1:], max_tokens=4)
    assert "dropped_messages" not in (short.usage.model_extra or {})  # only when something was left out
