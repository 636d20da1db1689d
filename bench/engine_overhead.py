"""lmnb's single-stream generation speed next to llama-bench (the C++ limit) and llama-cpp-python.

Each measurement runs in a process of its own, started for it and ended after it, so that no two
loaded models share a process or its thread pools; the sides take turns, run after run:

    llama-bench        $LLAMA_BENCH -m MODEL -p 0 -n N -t TH -fa 1 (tg N: decode only, no sampling),
                       when the environment variable LLAMA_BENCH names the binary (build it from the
                       llama.cpp vendored in the llama-cpp-python sdist: ../shared/anchors-measured.md)
    llama-cpp-python   Llama.create_completion(PROMPT, max_tokens=N, temperature=0, stream=True)
    lmnb               the engine, the same raw prompt, greedy, streamed

The Python sides generate exactly N tokens greedily from the same prompt with the same threads,
context and flash attention, and are timed the same way (first streamed chunk -> last, over N-1
tokens). The headlines are medians of per-run ratios (the sides of one run back to back, which
cancels the slow drift of a shared machine): lmnb / llama-bench (target >= 0.97) and lmnb /
llama-cpp-python, each with a 95% bootstrap interval and a verdict: met (the whole interval is at
or above the target), missed (all of it below), or within the host's noise (more runs narrow it).

A shared host's speed swings by more than 3% between two runs of the same binary, so each Python
side also times its own ``llama_decode`` calls within the same window: the share of the wall time
spent in llama.cpp's decode is what that side can reach of a C++ loop making the same calls
(llama-bench's), measured in the same milliseconds and so free of the host's drift. And where a C
compiler is found, lmnb's process also runs llama-bench's loop itself (``tg_loop.c``, built against
the same llama.cpp library) on the engine's worker thread, on a context with the same settings,
before and after lmnb's run: lmnb / that loop is the comparison with the C++ limit without the
drift between processes.

    python bench/engine_overhead.py [--model PATH] [--tokens 128] [--runs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Optional

PROMPT = "Once"
TARGET = 0.97
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DecodeClock:
    """Wraps ``llama_decode`` (both names Python code calls it by) and records when each call ran."""

    def __init__(self) -> None:
        import llama_cpp
        import llama_cpp.llama_cpp as low

        self.calls: list[tuple[float, float]] = []
        inner = low.llama_decode

        def timed_decode(ctx, batch):
            t = time.perf_counter()
            try:
                return inner(ctx, batch)
            finally:
                self.calls.append((t, time.perf_counter()))

        llama_cpp.llama_decode = low.llama_decode = timed_decode

    def share(self, chunks, k: int) -> tuple[float, float]:
        """Tokens/s over ``k`` tokens, and the share of that window spent inside llama_decode.

        Only the part of each call inside the window (first token to last) counts: lmnb's worker
        is already decoding the second token when the first reaches the reader."""
        self.calls.clear()
        t_first = None
        for _ in chunks:
            t_last = time.perf_counter()
            t_first = t_first or t_last
        s = t_last - t_first
        inside = sum(max(0.0, min(b, t_last) - max(a, t_first)) for a, b in self.calls)
        return (k - 1) / s, inside / s


def side_llama_cpp(path: str, n: int, threads: int) -> tuple[float, float]:
    clock = DecodeClock()
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads,
                flash_attn=True, verbose=False)  # fmt: skip
    finish: dict = {}

    def chunks(k: int):
        for c in llm.create_completion(PROMPT, max_tokens=k, temperature=0.0, stream=True):
            finish["reason"] = c["choices"][0]["finish_reason"] or finish.get("reason")
            if c["choices"][0]["text"]:
                yield c

    clock.share(chunks(16), 16)  # warm-up: page cache, thread pool
    out = clock.share(chunks(n), n)
    assert finish.get("reason") == "length", f"llama-cpp-python stopped early ({finish}); pick a longer prompt"
    return out


def c_loop():
    """llama-bench's generation loop (``tg_loop.c``) built against the llama.cpp library that
    llama_cpp loads, as a ctypes function; None where no C compiler is found or the build fails."""
    import ctypes
    import shutil
    import tempfile

    import llama_cpp

    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return None
    libdir = os.environ.get("LLAMA_CPP_LIB_PATH") or os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    out = os.path.join(tempfile.mkdtemp(prefix="lmnb-bench-"), "tg_loop.so")
    built = subprocess.run([cc, "-O2", "-shared", "-fPIC", os.path.join(ROOT, "bench", "tg_loop.c"), "-o", out,
                            f"-L{libdir}", "-lllama", f"-Wl,-rpath,{libdir}"], capture_output=True, text=True)  # fmt: skip
    if built.returncode:
        print(f"tg_loop.c did not build: {built.stderr[-300:]}", file=sys.stderr)
        return None
    fn = ctypes.CDLL(out).tg_loop
    fn.restype = ctypes.c_double
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
    return fn


def side_lmnb(path: str, n: int, threads: int) -> tuple[float, float, Optional[float]]:
    clock = DecodeClock()
    import llama_cpp as C

    import lmnb
    from lmnb.engine import Engine, GenerationSpec
    from lmnb.types import LoadOptions, SamplingParams

    lmnb.configure(history=False)
    eng = Engine()
    eng.load(path, LoadOptions(n_ctx=2048, n_batch=512, n_threads=threads, flash_attn=True))
    lm = eng._model  # the engine's llama.cpp model and context: the C loop gets a twin of the context

    def run(k: int) -> tuple[float, float]:
        # the same sampling as llama-cpp-python's create_completion defaults (greedy after them)
        params = SamplingParams(temperature=0.0, max_tokens=k, repeat_penalty=1.0, top_k=40, top_p=0.95, min_p=0.05)
        req = eng.submit(GenerationSpec(prompt=PROMPT, params=params))
        out = clock.share(req, k)
        res = req.result()
        assert res.finish_reason == "length" and res.usage.completion_tokens == k, res
        return out

    def twin_context():
        cp = C.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = C.llama_n_ctx(lm.ctx), 512, 512
        cp.n_seq_max, cp.kv_unified = C.llama_n_seq_max(lm.ctx), lm.unified
        cp.n_threads = cp.n_threads_batch = threads
        cp.flash_attn_type, cp.no_perf = C.LLAMA_FLASH_ATTN_TYPE_AUTO, True
        return C.llama_init_from_model(lm.model, cp)

    loop = c_loop()
    twin = eng._call(twin_context) if loop else None

    def c_run(k: int) -> float:
        """The C loop's tokens/s over the decodes lmnb's window covers (k - 1, from position 1),
        on the engine's worker thread, which owns the OpenMP threads lmnb decodes with."""

        def go() -> float:
            C.llama_memory_clear(C.llama_get_memory(twin), True)
            return (k - 1) / loop(twin, 1, k - 1, lm.n_vocab)

        return eng._call(go)

    try:
        run(16)
        if twin is None:
            return (*run(n), None)
        c_run(16)
        before = c_run(n)
        tps, share = run(n)
        return tps, share, (before + c_run(n)) / 2  # around lmnb's run: the host's drift cancels
    finally:
        if twin is not None:
            eng._call(lambda: C.llama_free(twin))
        eng.shutdown()


def llama_bench(path: str, n: int, threads: int) -> float:
    out = subprocess.run([os.environ["LLAMA_BENCH"], "-m", path, "-p", "0", "-n", str(n), "-t", str(threads),
                          "-fa", "1", "-r", "1", "-o", "json"], capture_output=True, text=True, timeout=300)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"llama-bench failed: {out.stderr[-500:]}")
    return float(json.loads(out.stdout)[0]["avg_ts"])


def median_interval(ratios: list[float], resamples: int = 4000) -> tuple[float, float]:
    """A 95% bootstrap interval for the median of ``ratios``: how far the headline could move if
    the runs were made again on the same host (a shared host's speed swings more than the 3% a
    target asks to resolve, so one median alone cannot say whether it is met)."""
    import random

    rng = random.Random(0)  # the same runs give the same interval
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def in_process_of_its_own(side: str, args: argparse.Namespace) -> list:
    """Run one side in a fresh Python process (this checkout's lmnb first on its path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    out = subprocess.run([sys.executable, __file__, "--side", side, "--model", args.model, "--tokens", str(args.tokens),
                          "--threads", str(args.threads)], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{side} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # [tok/s, share in decode(, C loop tok/s)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, help="default: physical cores (what lmnb and llama-bench pick)")
    ap.add_argument("--side", choices=("lmnb", "llama-cpp-python"), help=argparse.SUPPRESS)  # one measurement
    args = ap.parse_args()
    if args.threads is None:
        import psutil

        args.threads = psutil.cpu_count(logical=False) or os.cpu_count() or 2
    if args.model is None:
        sys.path.insert(0, ROOT)
        from lmnb.sources.library import bundled_model

        args.model = bundled_model("smollm2")
    if args.side:
        run = side_lmnb if args.side == "lmnb" else side_llama_cpp
        print(json.dumps(run(args.model, args.tokens, args.threads)))
        return 0

    sides = {"llama-cpp-python": lambda: in_process_of_its_own("llama-cpp-python", args),
             "lmnb": lambda: in_process_of_its_own("lmnb", args)}  # fmt: skip
    if os.environ.get("LLAMA_BENCH"):
        sides = {"llama-bench": lambda: llama_bench(args.model, args.tokens, args.threads), **sides}
    tps: dict[str, list[float]] = {k: [] for k in sides}
    in_decode: dict[str, list[float]] = {k: [] for k in sides if k != "llama-bench"}
    to_c_loop: list[float] = []  # lmnb / llama-bench's loop in lmnb's process
    names = list(sides)
    for i in range(args.runs):
        # each run starts with the next side: the host's speed drifts within a run, and a side
        # always measured first (or last) would carry that drift into every ratio
        for name in names[i % len(names):] + names[: i % len(names)]:
            got = sides[name]()
            if name == "llama-bench":
                tps[name].append(got)
            else:
                tps[name].append(got[0])
                in_decode[name].append(got[1])
                if len(got) > 2 and got[2]:
                    to_c_loop.append(got[0] / got[2])
        print(f"run {i + 1}: " + "   ".join(f"{k} {v[-1]:6.1f}" for k, v in tps.items()) + " tok/s", flush=True)

    print()
    print(f"model: {os.path.basename(args.model)}, {args.tokens} tokens, {args.threads} threads, flash attention, "
          f"{args.runs} runs, each side in a process of its own")  # fmt: skip
    for name, v in tps.items():
        print(f"{name:<17} {statistics.median(v):7.1f} tok/s (median; range {min(v):.1f}-{max(v):.1f})")
    status = 0
    for ref in ("llama-bench", "llama-cpp-python"):
        if ref in tps:
            ratios = sorted(b / a for a, b in zip(tps[ref], tps["lmnb"]))
            ratio = statistics.median(ratios)
            low, high = median_interval(ratios)
            verdict = "met" if low >= TARGET else "missed" if high < TARGET else "within this host's noise"
            print(f"lmnb / {ref}: {ratio:.3f} (median of {len(ratios)} paired runs, 95% interval {low:.3f}-{high:.3f}, "
                  f"range {ratios[0]:.3f}-{ratios[-1]:.3f}; target >= {TARGET}: {verdict})")
            status = status or int(ratio < TARGET)
    if to_c_loop:
        ratios = sorted(to_c_loop)
        print(f"lmnb / llama-bench's loop (tg_loop.c) in lmnb's process, same thread and library: "
              f"{statistics.median(ratios):.3f} (median, range {ratios[0]:.3f}-{ratios[-1]:.3f})")
    for name, v in in_decode.items():
        print(f"{name}: {statistics.median(v):.1%} of its wall time inside llama_decode (median; range "
              f"{min(v):.1%}-{max(v):.1%}): the speed it keeps of a C++ loop making the same calls")
    if "llama-bench" not in tps:
        print("llama-bench: skipped (set LLAMA_BENCH to a llama-bench binary to include it)")
    return status


if __name__ == "__main__":
    sys.exit(main())
