"""Single-stream speed with a cache full of finished requests, against an empty cache.

A shared KV cache keeps what finished requests left (a conversation's turns) for the next
request that continues them. llama.cpp walks the cache up to its highest used cell at every
decode step, so those idle cells would slow every later token; lmnb moves them to RAM while
anything is decoded (``lmnb/engine/stash.py``). This bench fills the cache with one-off
requests, then times a greedy stream against the same stream on an empty cache, turn by turn in
one process:

    empty   the engine's cache cleared before the stream
    full    after --fill one-off requests of --fill-tokens tokens each, kept for reuse

``full / empty`` near 1.0 means idle cells cost the running stream nothing. With
``--keep-in-cache`` the idle cells stay in the cache instead (lmnb's behaviour before the
stash), which shows what the stash saves.

    python bench/idle_cache.py [--model PATH] [--ctx 2048] [--fill 12] [--fill-tokens 150] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--fill", type=int, default=12, help="one-off requests left in the cache")
    ap.add_argument("--fill-tokens", type=int, default=150)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep-in-cache", action="store_true", help="leave idle cells in the cache (no stash)")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    import lmnb
    from lmnb.engine import Engine, GenerationSpec
    from lmnb.sources.library import bundled_model
    from lmnb.types import LoadOptions, SamplingParams

    lmnb.configure(history=False)
    eng = Engine()
    eng.load(args.model or bundled_model("smollm2"), LoadOptions(n_ctx=args.ctx, n_batch=512, flash_attn=True))
    if args.keep_in_cache:
        eng._stash_idle = lambda: None  # the behaviour before the stash, for comparison

    def generate(prompt: str, n: int) -> float:
        """Greedy tokens/s of one stream, first streamed chunk to last."""
        params = SamplingParams(temperature=0.0, max_tokens=n + 1, repeat_penalty=1.0)
        req = eng.submit(GenerationSpec(prompt=prompt, params=params))
        times = [time.perf_counter() for _ in req]
        res = req.result()
        assert res.usage.completion_tokens == len(times) == n + 1, (res, len(times))
        return (len(times) - 1) / (times[-1] - times[0])

    left: list[int] = []

    def empty() -> float:
        eng.clear_cache()
        return generate("Once", args.tokens)

    def full() -> float:
        eng.clear_cache()
        for i in range(args.fill):  # one-off requests: repeat_penalty keeps them from stopping early
            params = SamplingParams(temperature=0.0, max_tokens=args.fill_tokens, repeat_penalty=1.3)
            eng.submit(GenerationSpec(prompt=f"Story number {i + 1}: once upon a time", params=params)).result()
        left.append(eng._call(lambda: sum(map(len, eng._slot_tokens))))  # cells the finished requests hold
        return generate("Once", args.tokens)

    empty(), full()  # warm-up
    ratios, tps = [], {"empty": [], "full": []}
    for i in range(args.runs):
        order = ("empty", "full") if i % 2 == 0 else ("full", "empty")
        got = {name: (empty if name == "empty" else full)() for name in order}
        for name, v in got.items():
            tps[name].append(v)
        ratios.append(got["full"] / got["empty"])
        print(f"run {i + 1}: empty cache {got['empty']:6.1f} tok/s, after {args.fill} requests {got['full']:6.1f}", flush=True)
    eng.shutdown()
    print(f"\n{os.path.basename(args.model or 'SmolLM2-135M-Instruct')}, n_ctx {args.ctx}, {statistics.median(left):.0f} cells "
          f"left by {args.fill} finished requests, idle cells {'kept in the cache' if args.keep_in_cache else 'stashed in RAM'}")  # fmt: skip
    for name, v in tps.items():
        print(f"{name:<6} {statistics.median(v):7.1f} tok/s (median; range {min(v):.1f}-{max(v):.1f})")
    print(f"full / empty: {statistics.median(ratios):.3f} (median of paired runs, range {min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
