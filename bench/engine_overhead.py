"""lmnb's single-stream generation speed next to raw llama-cpp-python, same model/prompt/threads.

Both sides generate exactly N tokens greedily from the same raw prompt, streaming; this script
times both the same way (first streamed chunk -> last, over N-1 tokens). Runs alternate, and the
headline is the median of the per-pair ratios (each pair back to back), which cancels the slow
drift of a shared machine better than a ratio of two medians (target >= 0.97).

    python bench/engine_overhead.py [--model PATH] [--tokens 128] [--runs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"


def time_stream(chunks) -> tuple[float, int, str]:
    """(tokens/s over the stream after its first chunk, number of chunks, finish reason)."""
    t_first = t_last = None
    n = 0
    for _ in chunks:
        now = time.perf_counter()
        t_first = t_first or now
        t_last = now
        n += 1
    return t_first, t_last, n


def raw_run(llm, n_tokens: int) -> float:
    finish = {}

    def chunks():
        for c in llm.create_completion(PROMPT, max_tokens=n_tokens, temperature=0.0, stream=True):
            finish["reason"] = c["choices"][0]["finish_reason"] or finish.get("reason")
            if c["choices"][0]["text"]:
                yield c

    t0, t1, _ = time_stream(chunks())
    assert finish.get("reason") == "length", f"raw run stopped early ({finish}); pick a longer-running prompt"
    return (n_tokens - 1) / (t1 - t0)


def lmnb_run(engine, n_tokens: int) -> tuple[float, float]:
    from lmnb.engine import GenerationSpec
    from lmnb.types import SamplingParams

    spec = GenerationSpec(
        prompt=PROMPT,
        params=SamplingParams(
            temperature=0.0, max_tokens=n_tokens, repeat_penalty=1.0, top_k=40, top_p=0.95, min_p=0.05
        ),
    )
    req = engine.submit(spec)
    t0, t1, _ = time_stream(req)
    res = req.result()
    assert res.finish_reason == "length" and res.usage.completion_tokens == n_tokens, res
    return (n_tokens - 1) / (t1 - t0), res.timings.generation_tokens_per_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    from llama_cpp import Llama

    import lmnb
    from lmnb.engine import Engine
    from lmnb.sources.library import bundled_model
    from lmnb.types import LoadOptions

    lmnb.configure(history=False)
    path = args.model or bundled_model("smollm2")
    # the same kernels on both sides (flash attention is lmnb's default), so the ratio is the
    # engine's own overhead
    raw = Llama(model_path=path, n_ctx=2048, n_batch=512, n_threads=args.threads, n_threads_batch=args.threads,
                flash_attn=True, verbose=False)  # fmt: skip
    eng = Engine()
    eng.load(path, LoadOptions(n_ctx=2048, n_batch=512, n_threads=args.threads, flash_attn=True))

    # warm-up both (page cache, thread pools)
    raw_run(raw, 16)
    lmnb_run(eng, 16)

    raw_tps, lm_tps, lm_internal = [], [], []
    for i in range(args.runs):
        raw_tps.append(raw_run(raw, args.tokens))
        a, b = lmnb_run(eng, args.tokens)
        lm_tps.append(a)
        lm_internal.append(b)
        print(f"run {i + 1}: raw llama-cpp-python {raw_tps[-1]:7.1f} tok/s   lmnb {lm_tps[-1]:7.1f} tok/s", flush=True)

    r, m = statistics.median(raw_tps), statistics.median(lm_tps)
    ratios = sorted(b / a for a, b in zip(raw_tps, lm_tps))
    ratio = statistics.median(ratios)
    print()
    print(f"model: {os.path.basename(path)}, {args.tokens} tokens, {args.threads} threads, flash attention on both, "
          f"{args.runs} runs (median)")  # fmt: skip
    print(f"raw llama-cpp-python create_completion(stream=True): {r:7.1f} tok/s")
    print(f"lmnb engine (streamed):                              {m:7.1f} tok/s  (engine's own timing {statistics.median(lm_internal):.1f})")
    print(f"ratio lmnb / raw, median of paired runs: {ratio:.3f}  (range {ratios[0]:.3f}-{ratios[-1]:.3f}; target >= 0.97)")
    eng.shutdown()
    return 0 if ratio >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())
