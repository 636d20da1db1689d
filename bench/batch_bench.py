"""``lmnb.map`` (batched decoding in the notebook) next to llama.cpp's llama-server and llama-cpp-python.

One prompt template ("Write one sentence about {item}.") over P topics, greedy (temperature 0,
repeat penalty off), the same sampling settings and max_tokens T on every side, each side warmed
up once before it is timed, all measured in one run on the same GGUF file:

    llama-cpp-python loop   llama_cpp.Llama.create_chat_completion, one prompt after the other
                            (n_ctx C, TH threads: what llama_cpp.server does with the rows too)
    lmnb.map, defaults      lmnb.load(MODEL); lmnb.map(template, topics, ...)  -- nothing tuned
    lmnb.map, tuned         lmnb.load(MODEL, n_ctx=C, n_threads=TH, n_parallel=P); map(..., parallel=P)
    llama-server, defaults  $LLAMA_SERVER --model MODEL, sent the same prompts by P client threads
    llama-server, tuned     ... --parallel P --ctx-size C --threads TH --threads-batch TH --kv-unified
    llama-batched-bench     $LLAMA_BATCHED_BENCH at P sequences (the C++ ceiling; no prompts of ours)

llama-server and llama-batched-bench run when LLAMA_SERVER / LLAMA_BATCHED_BENCH name their binaries
(built from the llama.cpp vendored in the llama-cpp-python sdist: ../shared/anchors-measured.md).

Completion tokens are each side's own count (``Completion.usage`` / the ``usage`` field); throughput
is tokens / wall time of the whole batch. Headlines: lmnb.map / the loop (target >= 2x) and lmnb.map
/ llama-server with the same configuration (target >= 1.0x). Also printed: lmnb's batching factor
(sequences per llama_decode call, from the engine's ``stats``) and the prompt tokens it took from
the KV cache instead of evaluating. For N concurrent server clients see bench/server_bench.py.

The targets are informational: the exit code is 0 whether they are met or not. The benchmark and
the servers share the machine's cores, and llama.cpp slows down badly when its threads compete
with other busy processes: the load is printed at the start and the end; compare the ratios.

    python bench/batch_bench.py [--model PATH] [--prompts 32] [--tokens 48] [--parallel 16]
                                [--threads N] [--ctx 4096]
    python bench/batch_bench.py --quick      # 16 prompts x 32 tokens, for CI
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import server_bench as sb  # noqa: E402  (its server helpers; it also puts this checkout's lmnb first)

TEMPLATE = "Write one sentence about {item}."
TOPICS = [
    "the ocean", "a mountain village", "coffee", "the moon", "autumn leaves", "a busy train station",
    "honeybees", "an old library", "thunderstorms", "a lighthouse", "bicycles", "the desert at night",
    "volcanoes", "a jazz club", "penguins", "a rainforest", "chess", "a clock tower", "snowflakes",
    "a street market", "whales", "a windmill", "the northern lights", "a bakery at dawn", "owls",
    "a spaceship", "tea ceremonies", "a river delta", "fireflies", "an abandoned castle", "glaciers",
    "a city park", "octopuses", "a vineyard", "the first day of school", "a submarine", "wolves",
    "a hot air balloon", "coral reefs", "a mountain lake", "origami", "a rooftop garden", "comets",
    "a fishing boat", "elephants", "a quiet museum", "the Sahara", "a violin", "bamboo forests",
    "a carnival", "foxes", "a solar eclipse", "a farmhouse kitchen", "the Amazon river", "robots",
    "a snowy cabin", "butterflies", "a train journey", "sunflowers", "a pirate ship", "the Arctic",
    "a small bookshop", "dolphins", "a thunderous waterfall",
]
WARMUP_TOPIC = "a warm-up exercise"
# Same sampling settings on every side: greedy, repeat penalty off. (A penalty would still apply
# before the greedy pick, and lmnb counts the prompt in its window where llama-cpp-python does
# not, so the replies, and the work, would differ.)
SAMPLING = {"top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
N_BATCH = 512
BATCH_TARGET = 2.0
SERVER_TARGET = 1.0


def topics(n: int) -> list[str]:
    """n distinct topics (past the list's end: the same ones, numbered)."""
    return [TOPICS[i % len(TOPICS)] + ("" if i < len(TOPICS) else f" (part {i // len(TOPICS) + 1})")
            for i in range(n)]


def verdict(ratio: float, target: float) -> str:
    return "target met" if ratio >= target else "below target"


def machine_line(when: str) -> str:
    """CPUs, load average, and how busy the CPUs are right now (the load average lags a minute)."""
    import psutil

    one, five, fifteen = os.getloadavg()
    busy = psutil.cpu_percent(interval=1.0)
    cpus = f"{os.cpu_count()} CPUs ({psutil.cpu_count(logical=False)} physical)"
    line = (f"machine ({when}): {cpus}, load average {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min), "
            f"CPUs {busy:.0f}% busy over the last second")
    if busy > 25:
        line += "\n  -- other processes are busy: absolute figures will be low and noisy, compare the ratios"
    return line


# ----------------------------------------------------------------------------------------------
# the sides
# ----------------------------------------------------------------------------------------------
def run_loop(args: argparse.Namespace, items: list[str]) -> tuple[int, float]:
    """llama-cpp-python, one prompt after the other: (completion tokens, wall seconds)."""
    from llama_cpp import Llama

    raw = Llama(model_path=args.model, n_ctx=args.ctx, n_batch=N_BATCH, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)
    params = dict(temperature=0.0, max_tokens=args.tokens, **SAMPLING)

    def one(topic: str) -> dict:
        return raw.create_chat_completion(messages=[{"role": "user", "content": TEMPLATE.format(item=topic)}],
                                          **params)  # fmt: skip

    try:
        one(WARMUP_TOPIC)
        t0 = time.perf_counter()
        out = [one(t) for t in items]
        return sum(r["usage"]["completion_tokens"] for r in out), time.perf_counter() - t0
    finally:
        raw.close()


def run_map(args: argparse.Namespace, items: list[str], tuned: bool) -> tuple[int, float, str]:
    """lmnb.map in this process: (completion tokens, wall seconds, what the engine did)."""
    import lmnb

    lmnb.configure(history=False)  # a benchmark writes nothing into the user's history
    params = dict(temperature=0.0, max_tokens=args.tokens, progress=False, **SAMPLING)
    if tuned:
        lmnb.load(args.model, n_ctx=args.ctx, n_threads=args.threads, n_batch=N_BATCH, n_parallel=args.parallel)
        params["parallel"] = args.parallel
    else:
        lmnb.load(args.model)
    eng = lmnb.get_engine()
    try:
        lmnb.map(TEMPLATE, [WARMUP_TOPIC], **params)
        s0 = dict(eng.stats)
        t0 = time.perf_counter()
        res = lmnb.map(TEMPLATE, items, **params)
        wall = time.perf_counter() - t0
        d = {k: v - s0[k] for k, v in eng.stats.items()}
        if res.errors:
            print(f"  lmnb.map: {len(res.errors)} failed, first: {next(iter(res.errors.values()))}")
        tokens = sum(c.usage.completion_tokens for c in res.completions if c is not None)
        st = eng.status().options
        what = (f"{d['sequences_decoded'] / max(d['decode_calls'], 1):.2f} sequences per decode call, "
                f"{d['prefix_tokens_shared']} prompt tokens shared, {d['prompt_tokens_evaluated']} evaluated; "
                f"n_ctx {st.n_ctx}, n_parallel {st.n_parallel}, map parallel {res.stats['parallel']:g}")
        return tokens, wall, what
    finally:
        lmnb.unload()


def run_llama_server(args: argparse.Namespace, items: list[str], tuned: bool) -> tuple[int, float]:
    """The same prompts sent to llama-server by ``parallel`` client threads."""
    from openai import OpenAI

    srv = sb.start_llama_server(args, tuned)
    try:
        client = OpenAI(base_url=srv.url, api_key="none", max_retries=0, timeout=600)

        def one(topic: str) -> int:
            r = client.chat.completions.create(
                model=srv.model_id, messages=[{"role": "user", "content": TEMPLATE.format(item=topic)}],
                max_tokens=args.tokens, temperature=0.0, top_p=SAMPLING["top_p"],
                extra_body={k: v for k, v in SAMPLING.items() if k != "top_p"})
            return r.usage.completion_tokens

        one(WARMUP_TOPIC)
        with ThreadPoolExecutor(args.parallel) as pool:
            t0 = time.perf_counter()
            tokens = sum(pool.map(one, items))
            return tokens, time.perf_counter() - t0
    finally:
        srv.stop()


def run_batched_bench(args: argparse.Namespace) -> str:
    """llama-batched-bench's generation speed at 1 and ``parallel`` sequences (tokens/s)."""
    cmd = [os.environ["LLAMA_BATCHED_BENCH"], "-m", args.model, "-c", str(max(args.ctx, 4096)), "-b", "2048",
           "-ub", "512", "-npp", "64", "-ntg", str(args.tokens), "-npl", f"1,{args.parallel}", "-t", str(args.threads),
           "-fa", "on", "--output-format", "jsonl"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    import json

    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return ", ".join(f"{r['pl']} seq {r['speed_tg']:.1f}" for r in rows) + " tokens/s (generation)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--prompts", type=int, default=32, help="prompts in the batch (default 32)")
    ap.add_argument("--tokens", "-t", type=int, default=48, help="max_tokens per prompt (default 48)")
    ap.add_argument("--parallel", type=int, default=16, help="sequences decoded together, tuned (default 16)")
    ap.add_argument("--threads", type=int, help="threads, tuned and the loop (default: physical cores)")
    ap.add_argument("--ctx", type=int, default=4096, help="context size, tuned and the loop (default 4096)")
    ap.add_argument("--quick", action="store_true", help="16 prompts x 32 tokens (CI smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.tokens = 16, 32
    sb.resolve_common(ap, args)
    import lmnb

    print(machine_line("start"))
    print(f"lmnb: {os.path.dirname(lmnb.__file__)}")
    print(f"model: {os.path.basename(args.model)}, {args.prompts} prompts x max_tokens {args.tokens}, greedy; "
          f"tuned = {args.threads} threads, ctx {args.ctx}, parallel {args.parallel}", flush=True)
    items = topics(args.prompts)
    rows: list[tuple[str, int, float]] = []
    notes: list[str] = []
    try:
        tokens, wall = run_loop(args, items)
        rows.append(("llama-cpp-python loop", tokens, wall))
        print(f"  {rows[-1][0]:<24} {tokens:5d} tokens in {wall:6.1f} s", flush=True)
        for tuned in (False, True):
            config = "tuned" if tuned else "defaults"
            tokens, wall, what = run_map(args, items, tuned)
            rows.append((f"lmnb.map, {config}", tokens, wall))
            notes.append(f"lmnb.map, {config}: {what}")
            print(f"  {rows[-1][0]:<24} {tokens:5d} tokens in {wall:6.1f} s", flush=True)
            if os.environ.get("LLAMA_SERVER"):
                tokens, wall = run_llama_server(args, items, tuned)
                rows.append((f"llama-server, {config}", tokens, wall))
                print(f"  {rows[-1][0]:<24} {tokens:5d} tokens in {wall:6.1f} s", flush=True)
        if os.environ.get("LLAMA_BATCHED_BENCH"):
            notes.append(f"llama-batched-bench: {run_batched_bench(args)}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    tps = {name: tokens / wall for name, tokens, wall in rows}
    print()
    print(f"{'side':<24} {'tokens':>6} {'wall s':>7} {'tok/s':>7} {'items/s':>7}")
    print("-" * 56)
    for name, tokens, wall in rows:
        print(f"{name:<24} {tokens:6d} {wall:7.1f} {tokens / wall:7.1f} {len(items) / wall:7.2f}")
    for note in notes:
        print(note)
    print()
    print(machine_line("end"))
    for config in ("defaults", "tuned"):
        r = tps[f"lmnb.map, {config}"] / tps["llama-cpp-python loop"]
        print(f"{config:<8} lmnb.map / llama-cpp-python loop: {r:5.2f}x (target >= {BATCH_TARGET:g}x): "
              f"{verdict(r, BATCH_TARGET)}")
        if f"llama-server, {config}" in tps:
            r = tps[f"lmnb.map, {config}"] / tps[f"llama-server, {config}"]
            print(f"{config:<8} lmnb.map / llama-server:          {r:5.2f}x (target >= {SERVER_TARGET:g}x): "
                  f"{verdict(r, SERVER_TARGET)}")
    if not os.environ.get("LLAMA_SERVER"):
        print("llama-server: skipped (set LLAMA_SERVER to a llama-server binary to include it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
