"""lmnb's batched decoding (``lmnb.map``, the server with ``--parallel``) next to llama-cpp-python.

Two comparisons, measured in one run on the same GGUF file, threads, context and max_tokens, each
side warmed up once before it is timed; the headline of each is a ratio.

1. Notebook batch: one prompt template ("Write one sentence about {item}.") over P topics, greedy
   (temperature 0, repeat penalty off) with the same sampling settings on both sides:

    (a) lmnb.map(template, topics, max_tokens=T, temperature=0, parallel=8, progress=False)
    (b) a loop over llama_cpp.Llama.create_chat_completion, one prompt after the other

   Both in this process; lmnb loaded with lmnb.load(MODEL, n_ctx=C, n_threads=TH,
   n_parallel=8) (the size lmnb.map would otherwise resize its context to on first use).

   Completion tokens are each side's own count (``Completion.usage`` / the ``usage`` field);
   throughput is tokens / wall time of the whole batch (target: lmnb >= 2x). Also printed: lmnb's
   batching factor (sequences decoded per llama_decode call, from the engine's ``stats``), the
   prompt tokens it took from the KV cache instead of evaluating (``prefix_tokens_shared``), and
   how many replies are word for word the same on both sides (greedy; batching may change the odd
   token's rounding).

2. Server: N streaming clients (threads with the ``openai`` client) each send R chat requests one
   after the other ("Write a short story about {topic}.", a different topic per request, greedy,
   max_tokens T, stream_options.include_usage), against each server in turn, each in its own
   subprocess (started and stopped by server_bench.py's helpers):

    (a) python -m lmnb serve MODEL --port 0 --ctx C --threads TH --parallel 8
        (= lmnb.load(MODEL, n_parallel=8); lmnb.serve(port=0))
    (b) python -m llama_cpp.server --model MODEL --n_ctx C --n_threads TH --n_threads_batch TH
        (its defaults otherwise: interrupt_requests ends an in-flight stream when a new request
        arrives, so under concurrency most of its streams are cut short)
    (c) $LLAMA_SERVER --model MODEL --ctx-size C --threads TH --threads-batch TH --parallel 8,
        only when the environment variable LLAMA_SERVER names a llama-server binary

   Per server: tokens delivered (``usage.completion_tokens`` where the server sends it, else the
   number of content chunks), tok/s (tokens / wall time of all N*R requests), p50/p95 latency
   (send -> last byte), mean time to first token, and streams cut short: a stream that failed,
   ended without a finish_reason, or brought fewer tokens than the same request got from another
   server whose stream finished. Headline: lmnb / llama_cpp.server throughput (target >= 2.5x).

The targets are informational: the exit code is 0 whether they are met or not (each comparison
prints `target met` or `below target`). The benchmark process, its clients and the servers share
the machine's cores, and llama.cpp slows down badly when its threads compete with other busy
processes: the load average and how busy the CPUs are is printed at the start and the end;
compare the ratios, not the absolute figures, and rerun when other processes were busy.

    python bench/batch_bench.py [--model PATH] [--prompts 64] [--clients 8] [--requests 4]
                                [--tokens 64] [--parallel 8] [--threads N] [--ctx 2048]
                                [--skip-server]
    python bench/batch_bench.py --quick      # 16 prompts; 8 clients x 2 requests, for CI
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

TEMPLATE = "Write one sentence about {item}."
STORY = "Write a short story about {item}."
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
# not, so the replies, and the work, would differ; with it off they match word for word.)
SAMPLING = {"top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
N_BATCH = 512
# Measure the lmnb this file sits next to (not whichever copy is installed), here and in the
# server subprocess: the repository root goes first on sys.path and PYTHONPATH.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "lmnb", "__init__.py")) and ROOT not in sys.path:
    sys.path.insert(0, ROOT)
BATCH_TARGET = 2.0
SERVER_TARGET = 2.5


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
# 1. notebook batch: lmnb.map vs a create_chat_completion loop
# ----------------------------------------------------------------------------------------------
def bench_notebook(args: argparse.Namespace) -> tuple[float, str]:
    from llama_cpp import Llama

    import lmnb

    lmnb.configure(history=False)  # a benchmark writes nothing into the user's history
    items = topics(args.prompts)
    params = dict(temperature=0.0, max_tokens=args.tokens, **SAMPLING)

    raw = Llama(model_path=args.model, n_ctx=args.ctx, n_batch=N_BATCH, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)
    # what lmnb.map would grow the context to by itself (parallel sequences), done up front
    lmnb.load(args.model, n_ctx=args.ctx, n_threads=args.threads, n_batch=N_BATCH, n_parallel=args.parallel)
    eng = lmnb.get_engine()

    def raw_one(topic: str) -> dict:
        msgs = [{"role": "user", "content": TEMPLATE.format(item=topic)}]
        return raw.create_chat_completion(messages=msgs, **params)

    def lm_map(xs: list[str]):
        return lmnb.map(TEMPLATE, xs, parallel=args.parallel, progress=False, **params)

    # warm-up, once each (page cache, thread pools, first-call costs)
    raw_one(WARMUP_TOPIC)
    lm_map([WARMUP_TOPIC])

    print(f"notebook batch: {len(items)} prompts x max_tokens {args.tokens}, temperature 0", flush=True)
    t0 = time.perf_counter()
    raw_out = [raw_one(t) for t in items]
    raw_wall = time.perf_counter() - t0
    raw_tokens = sum(r["usage"]["completion_tokens"] for r in raw_out)
    raw_prompt = sum(r["usage"]["prompt_tokens"] for r in raw_out)
    print(f"  {'llama-cpp-python loop':<24} {raw_tokens:5d} tokens in {raw_wall:6.1f} s", flush=True)

    s0 = dict(eng.stats)
    t0 = time.perf_counter()
    res = lm_map(items)
    lm_wall = time.perf_counter() - t0
    s1 = dict(eng.stats)
    comps = [c for c in res.completions if c is not None]
    lm_tokens = sum(c.usage.completion_tokens for c in comps)
    lm_prompt = sum(c.usage.prompt_tokens for c in comps)
    print(f"  {'lmnb.map parallel=' + str(args.parallel):<24} {lm_tokens:5d} tokens in {lm_wall:6.1f} s"
          + (f"  ({len(res.errors)} failed, first: {next(iter(res.errors.values()))})" if res.errors else ""),
          flush=True)

    d = {k: s1[k] - s0[k] for k in s1}
    batching = d["sequences_decoded"] / d["decode_calls"] if d["decode_calls"] else float("nan")
    same = sum(1 for r, lm in zip(raw_out, res) if lm and r["choices"][0]["message"]["content"] == lm)
    st = eng.status().options
    raw_tps, lm_tps = raw_tokens / raw_wall, lm_tokens / lm_wall
    ratio = lm_tps / raw_tps

    print()
    print(f"{'side':<31} {'tokens':>6} {'wall s':>7} {'tok/s':>7} {'items/s':>7} {'prompt tok':>10}")
    print("-" * 72)
    print(f"{'llama-cpp-python, sequential':<31} {raw_tokens:6d} {raw_wall:7.1f} {raw_tps:7.1f} "
          f"{len(items) / raw_wall:7.2f} {raw_prompt:10d}")
    print(f"{'lmnb.map, parallel=' + str(args.parallel):<31} {lm_tokens:6d} {lm_wall:7.1f} {lm_tps:7.1f} "
          f"{len(items) / lm_wall:7.2f} {lm_prompt:10d}")
    print(f"lmnb engine: {batching:.2f} sequences per decode call ({d['sequences_decoded']} / "
          f"{d['decode_calls']}), {d['prefix_tokens_shared']} prompt tokens shared (borrowed from "
          f"another sequence's KV cells), {d['prompt_tokens_evaluated']} evaluated; n_ctx {st.n_ctx}, n_parallel {st.n_parallel}")
    print(f"replies identical to llama-cpp-python's: {same}/{len(items)} (greedy on both sides, but its default "
          f"attention kernel is not lmnb's flash attention, so replies can part ways; lmnb's batched rows match "
          f"the same prompts decoded alone: tests/test_batch.py)")
    if st.n_ctx != args.ctx:
        print(f"note: lmnb.map grew the context to {st.n_ctx} (from --ctx {args.ctx}) to fit {args.parallel} rows")
    line = (f"notebook batch  lmnb.map / llama-cpp-python loop: throughput {ratio:5.2f}x, "
            f"wall time {raw_wall / lm_wall:5.2f}x shorter (target >= {BATCH_TARGET:g}x): "
            f"{verdict(ratio, BATCH_TARGET)}")
    print(line, flush=True)

    # free both before the servers start (they would only hold memory)
    lmnb.unload()
    raw.close()
    return ratio, line


# ----------------------------------------------------------------------------------------------
# 2. server: lmnb --parallel vs llama_cpp.server (vs llama-server), streaming clients
# ----------------------------------------------------------------------------------------------
def _server_bench():
    """bench/server_bench.py, for its server start/stop helpers and result types."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import server_bench

    if os.path.isfile(os.path.join(ROOT, "lmnb", "__init__.py")):
        pp = server_bench.CHILD_ENV.get("PYTHONPATH", "")
        if not pp.startswith(ROOT + os.pathsep) and pp != ROOT:
            server_bench.CHILD_ENV["PYTHONPATH"] = ROOT + (os.pathsep + pp if pp else "")
    return server_bench


def _drain(srv):
    """Servers started with a known URL write to a pipe nobody reads (llama_cpp.server prints a
    line per interrupted stream): read it so they never block on a full pipe."""
    threading.Thread(target=srv.proc.stdout.read, daemon=True).start()
    return srv


def start_llama_cpp(args: argparse.Namespace):
    return _drain(_server_bench().start_llama_cpp(args))


def start_llama_server(args: argparse.Namespace):
    sb = _server_bench()
    port = sb.free_port()
    cmd = [os.environ["LLAMA_SERVER"], "--model", args.model, "--host", "127.0.0.1", "--port", str(port),
           "--ctx-size", str(args.ctx), "--threads", str(args.threads), "--threads-batch", str(args.threads),
           "--parallel", str(args.parallel)]
    return _drain(sb.ServerProcess("llama-server", cmd, url=f"http://127.0.0.1:{port}/v1"))


def server_messages(i: int) -> list[dict]:
    return [{"role": "user", "content": STORY.format(item=TOPICS[i % len(TOPICS)])}]


def stream_request(client, model: str, i: int, max_tokens: int):
    sb = _server_bench()
    res = sb.Result()
    t0 = time.perf_counter()
    try:
        stream = client.chat.completions.create(
            model=model, messages=server_messages(i), max_tokens=max_tokens, temperature=0.0,
            top_p=SAMPLING["top_p"], stream=True, stream_options={"include_usage": True},
            extra_body={k: v for k, v in SAMPLING.items() if k != "top_p"})
        sb.read_stream(stream, res, t0)
    except Exception as e:  # counted as cut short, never fatal
        res.error = f"{type(e).__name__}: {e}"
    res.latency = time.perf_counter() - t0
    return res


def bench_one_server(start, args: argparse.Namespace):
    sb = _server_bench()
    srv = start(args)  # stops its process itself if it fails to come up
    ok = False
    try:
        sb.warm_up(srv)
        st = _server_bench().run_load(srv, args, True, request=stream_request)
        errors = [r.error for r in st.results if r.error]
        print(f"  {srv.name:<17} {st.tokens:5d} tokens in {st.wall:6.1f} s"
              + (f"  ({len(errors)} errors, first: {errors[0]})" if errors else ""), flush=True)
        ok = srv.name != "lmnb" or not errors
        return st
    finally:
        srv.stop(keep_log=not ok)
        if not ok:
            print(f"  {srv.name} log kept: {srv.log.name}", file=sys.stderr)


def cut_short(runs: list) -> list[tuple[int, int, int]]:
    """Per run: (cut short, of which ended without finish_reason or failed, of which fewer tokens)."""
    out = []
    for k, st in enumerate(runs):
        no_finish = fewer = 0
        for i, r in enumerate(st.results):
            if r.error is not None or r.finish is None:
                no_finish += 1
                continue
            elsewhere = [o.results[i].tokens for j, o in enumerate(runs)
                         if j != k and o.results[i].error is None and o.results[i].finish is not None]
            if elsewhere and r.tokens < max(elsewhere):
                fewer += 1
        out.append((no_finish + fewer, no_finish, fewer))
    return out


def bench_servers(args: argparse.Namespace) -> tuple[float, str]:
    sb = _server_bench()
    n = args.clients * args.requests
    starts = [sb.start_lmnb, start_llama_cpp]
    if os.environ.get("LLAMA_SERVER"):
        starts.append(start_llama_server)
    print()
    print(f"server: {args.clients} streaming clients x {args.requests} requests x max_tokens {args.tokens}, "
          f"temperature 0", flush=True)
    runs = [bench_one_server(start, args) for start in starts]
    cuts = cut_short(runs)

    print()
    hdr = (f"{'server':<17} {'tokens':>6} {'wall s':>7} {'tok/s':>7} {'p50 s':>6} {'p95 s':>6} {'ttft s':>6}"
           f"  cut short")
    print(hdr)
    print("-" * (len(hdr) + 24))
    for st, (cut, no_finish, fewer) in zip(runs, cuts):
        src = "" if all(r.from_usage for r in st.ok) else "  (tokens = chunks)"
        print(f"{st.server:<17} {st.tokens:6d} {st.wall:7.1f} {st.tps:7.1f} {sb.fmt(st.pct(0.5))} "
              f"{sb.fmt(st.pct(0.95))} {sb.fmt(st.ttft)}  {cut}/{n} ({no_finish} no finish, {fewer} fewer tokens)"
              f"{src}")
    if not os.environ.get("LLAMA_SERVER"):
        print("llama-server: skipped (set LLAMA_SERVER to a llama-server binary to include it)")
    if any(c[0] for c in cuts):
        print("(a stream cut short ends early: its latency is not comparable)")
    lm, ref = runs[0], runs[1]
    ratio = lm.tps / ref.tps if ref.tps else float("inf")
    if len(runs) > 2:
        print(f"server          lmnb / llama-server: throughput {lm.tps / runs[2].tps:5.2f}x, "
              f"p50 latency {lm.pct(0.5) / runs[2].pct(0.5):5.2f}x (no target)")
    prompt = max((r.prompt_tokens for r in lm.ok), default=0)
    need = min(args.parallel, args.clients) * (prompt + args.tokens)
    if need > args.ctx:
        print(f"warning: {min(args.parallel, args.clients)} x ({prompt} prompt + {args.tokens}) tokens = {need} "
              f"> --ctx {args.ctx}: lmnb's sequences wait for room; raise --ctx")
    line = (f"server          lmnb / llama_cpp.server: throughput {ratio:5.2f}x, streams cut short "
            f"{cuts[0][0]}/{n} vs {cuts[1][0]}/{n} (target >= {SERVER_TARGET:g}x): {verdict(ratio, SERVER_TARGET)}")
    print(line, flush=True)
    return ratio, line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--prompts", type=int, default=64, help="prompts in the notebook batch (default 64)")
    ap.add_argument("--clients", "-n", type=int, default=8, help="concurrent streaming clients (default 8)")
    ap.add_argument("--requests", "-r", type=int, default=4,
                    help="requests per client, one after the other (default 4)")
    ap.add_argument("--tokens", "-t", type=int, default=64, help="max_tokens per prompt/request (default 64)")
    ap.add_argument("--parallel", type=int, default=8,
                    help="lmnb.map's parallel, lmnb serve's and llama-server's --parallel (default 8)")
    ap.add_argument("--threads", type=int, help="threads for every side (default: physical cores)")
    ap.add_argument("--ctx", type=int, default=2048, help="context size for every side (default 2048)")
    ap.add_argument("--skip-server", action="store_true", help="only the notebook batch comparison")
    ap.add_argument("--quick", action="store_true", help="16 prompts; clients x 2 requests (CI smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.requests = 16, 2
    _server_bench().resolve_common(ap, args)
    import lmnb

    print(machine_line("start"))
    print(f"lmnb: {os.path.dirname(lmnb.__file__)}")
    print(f"model: {os.path.basename(args.model)}, {args.threads} threads, ctx {args.ctx}, n_batch {N_BATCH}, "
          f"max_tokens {args.tokens}, parallel {args.parallel}", flush=True)
    lines: list[str] = []
    try:
        lines.append(bench_notebook(args)[1])
        if not args.skip_server:
            lines.append(bench_servers(args)[1])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(machine_line("end"))
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
