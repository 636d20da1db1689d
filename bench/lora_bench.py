"""LoRA adapters in lmnb: switching them at run time against reloading the base, and what mixed
adapter sets cost a batch. All in one run, on the bundled SmolLM2 (or --model), with adapters made
here (random rank-R LoRAs on every attention and MLP projection: numpy + gguf, and one PEFT folder).

    add (GGUF)            lmnb.lora(path): llama.cpp reads the adapter onto the loaded model
    add (PEFT, first)     lmnb.lora(folder): converted to GGUF (then cached), then added
    add (PEFT, cached)    the same folder again, after removing it: the cached conversion
    rescale / remove      lmnb.lora(name, scale) / lmnb.lora(name, remove=True)
    reload the base       lmnb.load(model): what a swap costs where adapters are fixed at load
                          (llama-cpp-python's Llama(lora_path=), Ollama's ADAPTER)

Then N streaming requests at once, greedy, max_tokens T: all on the base; all with one adapter;
half with the adapter and half without (llama.cpp applies one adapter set per decode call, so the
two halves take turns); reported as tokens/s and as ratios to the all-base batch.

    python bench/lora_bench.py [--model PATH] [--rank 16] [--requests 8] [--tokens 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PROMPTS = ["Write a short note about {}.".format(t) for t in (
    "the harbour", "a bakery", "the library", "autumn", "a bicycle", "the moon", "tea", "a river",
    "owls", "a market", "the snow", "a lighthouse", "bees", "a clock", "the desert", "a violin")]  # fmt: skip


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def batch(n: int, tokens: int, loras: list) -> float:
    """Tokens/s of n concurrent greedy requests, request i with adapters ``loras[i % len(loras)]``."""
    import lmnb

    t0 = time.perf_counter()
    reqs = [lmnb.complete(PROMPTS[i % len(PROMPTS)], stream=True, lora=loras[i % len(loras)], temperature=0,
                          max_tokens=tokens, repeat_penalty=1.0) for i in range(n)]  # fmt: skip
    done = sum(r.result().usage.completion_tokens for r in reqs)
    return done / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    import lmnb
    from lmnb.sources.library import bundled_model
    from tests.lora_fixtures import make_gguf_lora, make_peft_folder

    model = args.model or bundled_model("smollm2")
    lmnb.configure(history=False)
    work = tempfile.mkdtemp(prefix="lmnb-lora-bench-")
    os.environ["XDG_DATA_HOME"] = work  # converted adapters go here, not into the user's data dir
    gguf = make_gguf_lora(os.path.join(work, "a.gguf"), model, targets=TARGETS, rank=args.rank)
    peft = make_peft_folder(os.path.join(work, "peft"), model, targets=TARGETS, rank=args.rank, seed=1)
    size = os.path.getsize(gguf) / 1e6
    print(f"model: {os.path.basename(model)}; adapters: rank {args.rank} on {len(TARGETS)} projections of every "
          f"layer ({size:.1f} MB as GGUF F32)", flush=True)  # fmt: skip

    lmnb.load(model, n_parallel=args.requests)
    times: dict[str, list[float]] = {k: [] for k in ("add (GGUF)", "add (PEFT, first)", "add (PEFT, cached)",
                                                     "rescale", "remove", "reload the base")}  # fmt: skip
    for run in range(args.runs):
        times["add (GGUF)"].append(timed(lambda: lmnb.lora(gguf, name="a")))
        times["rescale"].append(timed(lambda: lmnb.lora("a", 0.5)))
        times["remove"].append(timed(lambda: lmnb.lora("a", remove=True)))
        if run == 0:
            times["add (PEFT, first)"].append(timed(lambda: lmnb.lora(peft, name="p")))
            lmnb.lora("p", remove=True)
        times["add (PEFT, cached)"].append(timed(lambda: lmnb.lora(peft, name="p")))
        lmnb.lora("p", remove=True)
        times["reload the base"].append(timed(lambda: lmnb.load(model, n_parallel=args.requests)))
    print()
    print(f"{'operation':<20} {'median ms':>10}   (runs: {args.runs}; PEFT first: once)")
    for k, v in times.items():
        print(f"{k:<20} {statistics.median(v) * 1000:10.1f}")
    reload_s = statistics.median(times["reload the base"])
    for k in ("add (GGUF)", "rescale", "add (PEFT, cached)"):
        print(f"reload the base / {k}: {reload_s / statistics.median(times[k]):.0f}x")

    lmnb.lora(gguf, name="a")
    n, t = args.requests, args.tokens
    batch(n, 8, [[]])  # warm-up
    sides = {"all base": [[]], "all with the adapter": ["a"], "half and half": [[], "a"]}
    tps: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.runs):
        for k, loras in sides.items():
            tps[k].append(batch(n, t, loras))
    print()
    print(f"{n} concurrent requests x {t} tokens, greedy ({args.runs} runs, median tokens/s):")
    base = statistics.median(tps["all base"])
    for k, v in tps.items():
        print(f"  {k:<22} {statistics.median(v):7.1f} tok/s   {statistics.median(v) / base:5.2f}x all base")
    st = lmnb.get_engine().stats
    print(f"  (the engine switched adapter sets {st['lora_switches']} times)")
    lmnb.unload()
    return 0


if __name__ == "__main__":
    sys.exit(main())
