"""Batching by default: parallel sequences share one KV cache, each with the whole context; idle
slots keep prompts cached (in RAM while others decode); a full cache pauses the newest sequence instead of failing; and
``batch_invariant`` gives replies identical alone and in a batch. All on the real SmolLM2."""

from __future__ import annotations

import re

import pytest

import lmnb
from lmnb.engine import GenerationSpec
from lmnb.types import SamplingParams


@pytest.fixture
def shared(loaded):
    """SmolLM2 as the defaults load it: 4 sequences decoded at once in one shared cache of 2048 cells."""
    assert loaded.status().options.n_parallel == 4 and loaded._model.unified
    return loaded


def _submit(eng, text: str, **params):
    return eng.submit(GenerationSpec(messages=[{"role": "user", "content": text}],
                                     params=SamplingParams(temperature=0, **params)))  # fmt: skip


def test_requests_are_decoded_together_and_each_has_the_whole_context(shared):
    eng = shared
    calls0, seqs0 = eng.stats["decode_calls"], eng.stats["sequences_decoded"]
    long_prompt = "Summarise this: " + "the river runs to the sea and the sea is wide. " * 120  # ~1,400 tokens
    reqs = [_submit(eng, long_prompt, max_tokens=24)] + [_submit(eng, f"Count to {n}.", max_tokens=64)
                                                          for n in (10, 20, 30)]  # fmt: skip
    results = [r.result(300) for r in reqs]
    assert results[0].usage.prompt_tokens > 2048 // 4  # more than a quarter of the context: one sequence's share before
    assert all(r.finish_reason in ("stop", "length") and r.text for r in results)
    calls, seqs = eng.stats["decode_calls"] - calls0, eng.stats["sequences_decoded"] - seqs0
    assert seqs / calls > 1.5, (seqs, calls)  # several sequences per llama_decode


def test_a_conversation_stays_cached_while_other_requests_run(shared):
    eng = shared
    lmnb.reset("cached")
    first = lmnb.chat("Tell me about the moon in three sentences.", conversation="cached", max_tokens=60, temperature=0)
    for n in range(6):  # other requests, more than the sequences run at once
        lmnb.chat(f"Name {n + 2} animals.", max_tokens=16, temperature=0)
    evaluated0 = eng.stats["prompt_tokens_evaluated"]
    second = lmnb.chat("And the sun?", conversation="cached", max_tokens=8, temperature=0)
    new_tokens = eng.stats["prompt_tokens_evaluated"] - evaluated0
    # only the new turn is read: the earlier one (prompt and reply) was still in the cache
    assert second.usage.cached_tokens >= first.usage.prompt_tokens + first.usage.completion_tokens - 4
    assert new_tokens == second.usage.prompt_tokens - second.usage.cached_tokens < 40
    lmnb.reset("cached")


def test_idle_cells_wait_outside_the_cache_and_come_back_intact(shared):
    """Cells no running sequence reads still slow each decode step of a shared cache (stash.py),
    so a finished request's cells leave the cache while another one runs, and come back when a
    request continues them: only the new tokens are read, and the model goes on from the right
    place (a count it continues faithfully)."""
    eng = shared
    _raw = lambda text, n: eng.submit(GenerationSpec(prompt=text, params=SamplingParams(temperature=0, max_tokens=n)))  # noqa: E731
    count = ", ".join(str(i) for i in range(1, 21)) + ","
    first = _raw(count, 40).result(120)
    assert [int(x) for x in re.findall(r"\d+", first.text)][:5] == [21, 22, 23, 24, 25], first.text
    stashed0, restored0 = eng.stats["cache_stashed"], eng.stats["cache_restored"]
    other = _raw("The capital of France is", 24).result(120)
    assert other.usage.cached_tokens == 0
    assert eng.stats["cache_stashed"] > stashed0
    # only the request that ran last holds cells in the cache; the count waits in RAM
    assert sum(pos >= 0 for pos in eng.slot_positions()) == 1, eng.slot_positions()

    evaluated0 = eng.stats["prompt_tokens_evaluated"]
    text = count + first.text
    more = _raw(text, 30).result(120)
    assert eng.stats["cache_restored"] == restored0 + 1
    assert more.usage.cached_tokens >= first.usage.prompt_tokens + first.usage.completion_tokens - 4
    assert eng.stats["prompt_tokens_evaluated"] - evaluated0 == more.usage.prompt_tokens - more.usage.cached_tokens
    numbers = [int(x) for x in re.findall(r"\d+", text + more.text)][:-1]  # the last may be cut short
    assert len(numbers) >= 35 and numbers == list(range(1, len(numbers) + 1)), more.text


def test_the_cell_and_the_history_row_show_the_cached_tokens(shared, shell):
    from .conftest import run_cell

    run_cell(shell, "chat -t 0 -n 40", "Tell me about the moon in two sentences.")
    result, cap = run_cell(shell, "chat -t 0 -n 8", "And the sun?")
    assert result.success
    row = lmnb.history(last=1).iloc[-1]
    assert row["cached_tokens"] > 20 and row["cached_tokens"] < row["prompt_tokens"]
    stats = cap.outputs[-1].data["text/plain"]
    assert f"prompt {row['prompt_tokens']} tokens ({row['cached_tokens']} cached)" in stats, stats
    shell.run_line_magic("lm", "reset")


def test_a_full_cache_pauses_the_newest_sequence_and_every_reply_completes(loaded, smollm2_path):
    lmnb.load(smollm2_path, n_ctx=512, n_parallel=4)
    eng = lmnb.get_engine()
    try:
        paused0 = eng.stats["sequences_paused"]
        starts = (1, 101, 201, 301)
        # the model continues a count faithfully: a sequence resumed with wrong cells would not
        reqs = [eng.submit(GenerationSpec(prompt=", ".join(str(i) for i in range(n, n + 10)) + ",",
                                          params=SamplingParams(temperature=0, max_tokens=200)))
                for n in starts]  # fmt: skip
        results = [r.result(600) for r in reqs]  # 4 x ~240 cells do not fit in 512 at once
        assert eng.stats["sequences_paused"] > paused0
        for n, r in zip(starts, results):
            assert r.finish_reason == "length" and r.usage.completion_tokens == 200
            numbers = [int(x) for x in re.findall(r"\d+", r.text)]
            assert len(numbers) >= 35 and numbers == list(range(n + 10, n + 10 + len(numbers))), r.text
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)


def test_batch_invariant_gives_the_same_greedy_replies_alone_and_batched(loaded, smollm2_path):
    lmnb.load(smollm2_path, n_ctx=2048, n_parallel=4, batch_invariant=True)
    eng = lmnb.get_engine()
    try:
        assert not eng._model.unified
        prompts = [f"Write two sentences about the number {i}." for i in range(4)]
        alone = [_submit(eng, p, max_tokens=48).result(120).text for p in prompts]
        together = [r.result(300).text for r in [_submit(eng, p, max_tokens=48) for p in prompts]]
        assert together == alone
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "_total "))  # fmt: skip


def test_eight_clients_of_a_default_server_share_the_decode_steps(shared):
    """8 streaming clients on a server with the default settings: they are decoded together
    (the batching factor in /metrics), and one with a long prompt still has the whole context."""
    import concurrent.futures

    import httpx
    import openai

    from lmnb.server import Server

    srv = Server("127.0.0.1", 0)
    try:
        root = srv.url.removesuffix("/v1")
        before = httpx.get(f"{root}/metrics").text
        client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0, timeout=300)
        long_prompt = "Summarise this: " + "the river runs to the sea and the sea is wide. " * 120

        def ask(i: int) -> tuple[str, int]:
            text = long_prompt if i == 0 else f"Write a short poem about the number {i}."
            stream = client.chat.completions.create(model="", messages=[{"role": "user", "content": text}],
                                                    max_tokens=32, temperature=0, stream=True,
                                                    stream_options={"include_usage": True})  # fmt: skip
            out, prompt_tokens = "", 0
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    out += chunk.choices[0].delta.content
                if chunk.usage:
                    prompt_tokens = chunk.usage.prompt_tokens
            return out, prompt_tokens

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(ask, range(8)))
        after = httpx.get(f"{root}/metrics").text
        assert all(text for text, _ in replies)
        assert replies[0][1] > 2048 // 4  # more than one sequence's share of a split context
        calls = _metric(after, "lmnb_decode_calls") - _metric(before, "lmnb_decode_calls")
        seqs = _metric(after, "lmnb_decoded_sequences") - _metric(before, "lmnb_decoded_sequences")
        assert seqs / calls > 2, (seqs, calls)  # sequences per llama_decode step
    finally:
        srv.stop()


def test_map_sizes_its_rows_from_their_rendered_prompts(shared):
    """count_prompt_tokens (what map sizes the context with) is the prompt the request reads."""
    spec = GenerationSpec(messages=[{"role": "user", "content": "Name a colour."}],
                          params=SamplingParams(temperature=0, max_tokens=4))  # fmt: skip
    counted = shared.count_prompt_tokens([spec])
    assert counted == [shared.submit(spec).result(120).usage.prompt_tokens] and counted[0] > 10
