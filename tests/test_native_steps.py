"""The compiled greedy step (lmnb/engine/native.py): built by the install, taken by plain greedy
single streams, and giving exactly the replies, cache and counters of the step in Python."""

import os
import subprocess
import sys

import llama_cpp as C
import pytest

from lmnb.engine import Engine, GenerationSpec, native
from lmnb.sources.library import bundled_model
from lmnb.types import LoadOptions, SamplingParams

GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0}  # plain greedy: the logits' argmax
PROMPT = "The history of the city of Paris"


def test_the_install_compiled_it():
    assert os.path.isfile(native.LIBRARY), "pip install compiles lmnb/engine/greedy_steps.c where cc is found"
    assert native.stepper() is not None


def test_lmnb_native_0_keeps_every_step_in_python():
    code = "from lmnb.engine import native; print(native.stepper())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, LMNB_NATIVE="0"), check=True)  # fmt: skip
    assert out.stdout.strip() == "None"


def test_a_wrapped_llama_decode_keeps_seeing_every_decode():
    # a profiler (or the speed bench) wraps llama_decode in Python: the steps stay in Python
    code = ("import llama_cpp as C; inner = C.llama_decode; C.llama_decode = lambda ctx, b: inner(ctx, b); "
            "from lmnb.engine import native; print(native.stepper())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def eng(request):
    e = Engine()
    e.load(bundled_model(request.param), LoadOptions(n_ctx=2048))
    assert e._native is not None
    yield e
    e.shutdown()


def cells_in_cache(e: Engine, slot: int) -> int:
    """How many positions sequence ``slot`` holds in llama.cpp's KV cache."""
    return e._call(lambda: C.llama_memory_seq_pos_max(C.llama_get_memory(e._model.ctx), slot) + 1)


def run_turns(e: Engine, compiled: bool) -> list:
    """Three greedy requests: to the length limit, cut by a stop string, and a next turn that
    continues the second from the cache; what each returns, and the cache after the second."""
    stepper, e._native = e._native, (e._native if compiled else None)
    try:
        e.clear_cache()
        calls = stepper.calls
        out = []
        long = e.submit(GenerationSpec(prompt=PROMPT, params=SamplingParams(max_tokens=48, **GREEDY))).result()
        out.append((long.text, long.finish_reason, long.usage.completion_tokens))
        cut = e.submit(GenerationSpec(prompt=PROMPT, params=SamplingParams(max_tokens=80, stop=[" the"], **GREEDY)))
        cut = cut.result()
        out.append((cut.text, cut.finish_reason, cut.usage.completion_tokens))
        # what the cache holds is what lmnb thinks it holds: no decode past the stop string left in
        # it (the slots in the cache; an idle one may be stashed in RAM while another decodes)
        held = [(n, len(e._slot_tokens[i])) for i in range(len(e._slot_tokens)) if (n := cells_in_cache(e, i))]
        out.append(held)
        more = e.submit(GenerationSpec(prompt=PROMPT + cut.text + " the", params=SamplingParams(max_tokens=24, **GREEDY)))
        more = more.result()
        out.append((more.text, more.usage.cached_tokens, more.usage.completion_tokens))
        assert (stepper.calls > calls) == compiled
        return out
    finally:
        e._native = stepper


def test_same_replies_cache_and_counts_as_the_python_step(eng):
    python = run_turns(eng, compiled=False)
    compiled = run_turns(eng, compiled=True)
    assert compiled == python
    (_, reason, n), (_, cut_reason, _), held, (_, cached, _) = compiled
    assert (reason, n) == ("length", 48) and cut_reason == "stop"
    assert held and all(cells == kept for cells, kept in held) and cached > 0


def test_a_request_that_comes_mid_reply_joins_the_batch(eng):
    eng.clear_cache()
    first = eng.submit(GenerationSpec(prompt=PROMPT, params=SamplingParams(max_tokens=160, **GREEDY)))
    it = iter(first)
    next(it)  # the first is streaming, on the compiled step
    before = dict(eng.stats)
    second = eng.submit(GenerationSpec(prompt="Name three colours.", params=SamplingParams(max_tokens=16, **GREEDY)))
    second.result(timeout=120)
    assert not first.done  # it was admitted while the first ran, not after it
    shared = eng.stats["sequences_decoded"] - before["sequences_decoded"]
    steps = eng.stats["decode_calls"] - before["decode_calls"]
    assert shared > steps  # some steps decoded both
    assert first.result(timeout=120).usage.completion_tokens == 160


def test_cancel_stops_a_compiled_run_at_once(eng):
    eng.clear_cache()
    req = eng.submit(GenerationSpec(prompt=PROMPT, params=SamplingParams(max_tokens=1500, **GREEDY)))
    next(iter(req))  # streaming, on the compiled step
    req.cancel()
    res = req.result(timeout=10)
    assert res.finish_reason == "cancelled"
    assert res.usage.completion_tokens < 200  # a run returns within its 25 ms budget
