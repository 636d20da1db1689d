"""lmnb's OpenAI-compatible server next to llama.cpp's llama-server and llama-cpp-python's server.

Every server runs the same GGUF file, one after the other, each in its own subprocess (started
here, stopped before the next one starts), in two configurations:

    defaults  each server started with only the model and a port, as a user first runs it:
                  python -m lmnb serve MODEL
                  $LLAMA_SERVER --model MODEL
                  python -m llama_cpp.server --model MODEL
    tuned     the same settings on every side (--parallel P, --ctx C, --threads TH):
                  python -m lmnb serve MODEL --parallel P --ctx C --threads TH
                  $LLAMA_SERVER --model MODEL --parallel P --ctx-size C --threads TH --threads-batch TH
                      --kv-unified   (one KV cache shared by the P sequences, as lmnb's)
                  python -m llama_cpp.server --model MODEL --n_ctx C --n_threads TH --n_threads_batch TH
                      (it serves one request at a time: it has no --parallel)

llama-server is included when the environment variable LLAMA_SERVER names its binary (build it
from the llama.cpp vendored in the llama-cpp-python sdist: ../shared/anchors-measured.md).

N clients (threads, each with the official ``openai`` client) each send R chat requests one after
the other, all clients at once, asking for T tokens (temperature 0.8, a fixed seed per request,
prompts that ask for long stories so most answers run to T tokens). Measured per server:

    tokens      completion tokens delivered: ``usage.completion_tokens`` where the server honours
                stream_options.include_usage, else the number of chunks with content
    tok/s       tokens / wall time of the whole batch of N*R requests
    ttft p50    median time to the first content chunk (streaming)
    p50, p95    request latency in seconds (send -> last byte)
    cut short   streams that ended without a finish_reason (or with an error). llama_cpp.server
                ends an in-flight stream as soon as another request arrives (interrupt_requests,
                on by default), so under concurrency most of its streams are cut short.

Headline, per configuration: lmnb / llama-server throughput (target >= 1.0) and time to first
token p50 (target <= 1.0), measured in the same run. Every request carries the same sampling
settings (top_p 0.95, top_k 40, min_p 0.05, repeat_penalty 1.1). The clients share the machine's
cores with the server, and llama.cpp slows down badly when its threads compete with other busy
processes: run on an otherwise idle machine, and compare ratios, not absolute figures.

    python bench/server_bench.py [--model PATH] [--clients 8] [--requests 4] [--tokens 64]
                                 [--threads N] [--ctx 16384] [--parallel 8] [--configs defaults,tuned]
                                 [--stream | --no-stream | --both]
    python bench/server_bench.py --quick      # defaults only, 2 clients x 1 request x 16 tokens, for CI
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

TOPICS = [
    "a lighthouse keeper who finds a message in a bottle",
    "a dragon who is afraid of the dark",
    "two robots exploring an abandoned city",
    "a young baker who opens a shop on the moon",
    "a detective solving a mystery on a train",
    "a girl who can talk to the wind",
    "a pirate crew searching for a lost island",
    "an old clockmaker and his mechanical bird",
    "a space station at the edge of the galaxy",
    "a village where it never stops snowing",
    "a musician who plays for the stars",
    "a cat who becomes the mayor of a town",
    "a knight who refuses to fight",
    "a library that is alive",
    "a family of giants living in the mountains",
    "a boy who builds a boat to cross the ocean",
]
SAMPLING = {"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1}  # llama.cpp extensions, same on both sides
STARTUP_TIMEOUT_S = 120
CHILD_ENV = dict(os.environ)
# Measure the lmnb this file sits next to (not whichever copy is installed), here and in the
# server subprocesses: the repository root goes first on sys.path and PYTHONPATH.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "lmnb", "__init__.py")):
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    CHILD_ENV["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)


# ----------------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class ServerProcess:
    """A server in its own process group; ``stop()`` always leaves nothing behind."""

    def __init__(self, name: str, cmd: list[str], url: Optional[str] = None) -> None:
        self.name, self.cmd = name, cmd
        self.log = tempfile.NamedTemporaryFile(prefix=f"server_bench_{name}_", suffix=".log", delete=False)
        # lmnb prints its URL on stdout (read below); a server given its port writes to the log
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.log if url else subprocess.PIPE, stderr=self.log,
            text=True, start_new_session=True, env=CHILD_ENV,
        )
        try:
            self.url = url or self._read_url()  # lmnb prints its URL; llama_cpp.server gets its port from us
            self._wait_ready()
        except BaseException:
            self.stop(keep_log=True)
            raise

    def _read_url(self) -> str:
        """lmnb's first stdout line: 'Serving <name> at <url>'."""
        line: list[str] = []
        t = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(STARTUP_TIMEOUT_S)
        if not line or " at " not in line[0]:
            raise RuntimeError(f"{self.name} did not print its URL; see {self.log.name}")
        # keep draining stdout so the child never blocks on a full pipe
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        return line[0].rsplit(" at ", 1)[1].strip()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                models = get_json(f"{self.url}/models")
                if models.get("data"):
                    self.model_id = models["data"][0]["id"]
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer GET /v1/models; see {self.log.name}")
            time.sleep(0.2)

    def stop(self, keep_log: bool = False) -> None:
        """SIGINT (lmnb stops its server cleanly), then SIGTERM, then SIGKILL, to the whole group."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc.stdout:
            try:
                self.proc.stdout.close()
            except OSError:
                pass
        self.log.close()
        if not keep_log:
            os.unlink(self.log.name)


def start_lmnb(args: argparse.Namespace, tuned: bool = True) -> ServerProcess:
    cmd = [sys.executable, "-m", "lmnb", "serve", args.model, "--port", "0"]
    if tuned:
        cmd += ["--ctx", str(args.ctx), "--threads", str(args.threads), "--parallel", str(args.parallel)]
    return ServerProcess("lmnb", cmd)


def start_llama_server(args: argparse.Namespace, tuned: bool = True) -> ServerProcess:
    port = free_port()
    cmd = [os.environ["LLAMA_SERVER"], "--model", args.model, "--host", "127.0.0.1", "--port", str(port)]
    if tuned:
        cmd += ["--ctx-size", str(args.ctx), "--threads", str(args.threads), "--threads-batch", str(args.threads),
                "--parallel", str(args.parallel), "--kv-unified"]
    return ServerProcess("llama-server", cmd, url=f"http://127.0.0.1:{port}/v1")


def start_llama_cpp(args: argparse.Namespace, tuned: bool = True) -> ServerProcess:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", args.model, "--host", "127.0.0.1",
           "--port", str(port), "--verbose", "False"]
    if tuned:
        cmd += ["--n_ctx", str(args.ctx), "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads)]
    return ServerProcess("llama_cpp.server", cmd, url=f"http://127.0.0.1:{port}/v1")


SERVERS = {"lmnb": start_lmnb, "llama-server": start_llama_server, "llama_cpp.server": start_llama_cpp}


# ----------------------------------------------------------------------------------------------
# clients
# ----------------------------------------------------------------------------------------------
@dataclass
class Result:
    latency: float = 0.0
    tokens: int = 0
    prompt_tokens: int = 0
    ttft: Optional[float] = None
    finish: Optional[str] = None
    from_usage: bool = False
    error: Optional[str] = None


@dataclass
class RunStats:
    server: str
    stream: bool
    wall: float
    results: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.error is None]

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.results)

    @property
    def tps(self) -> float:
        return self.tokens / self.wall

    def pct(self, q: float) -> float:
        """Latency percentile (linear interpolation between the closest ranks)."""
        lat = sorted(r.latency for r in self.ok)
        if len(lat) < 2:
            return lat[0] if lat else float("nan")
        return statistics.quantiles(lat, n=100, method="inclusive")[round(q * 100) - 1]

    @property
    def ttft(self) -> Optional[float]:
        """Median time to the first content chunk."""
        v = [r.ttft for r in self.ok if r.ttft is not None]
        return statistics.median(v) if v else None

    @property
    def cut_short(self) -> int:
        return sum(1 for r in self.results if r.error is not None or r.finish is None)


def messages_for(i: int) -> list[dict]:
    topic = TOPICS[i % len(TOPICS)]
    return [{"role": "user", "content": f"Write a long story about {topic}. Describe every scene in detail."}]


def resolve_common(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Defaults shared by the benches: threads = physical cores, the bundled model; and SIGTERM
    raising SystemExit, so that the finally blocks stop any server subprocess."""
    if args.threads is None:
        import psutil

        args.threads = psutil.cpu_count(logical=False) or os.cpu_count() or 2
    if args.model is None:
        from lmnb.sources.library import bundled_model

        args.model = bundled_model("smollm2")
    args.model = os.path.abspath(args.model)
    if not os.path.isfile(args.model):
        ap.error(f"no such model file: {args.model}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def read_stream(stream, res: Result, t0: float) -> None:
    """Consume an OpenAI chat stream into ``res``: time to first token, finish reason, tokens
    (from the final usage chunk when the server sends one, else the content chunks)."""
    chunks, usage = 0, None
    for c in stream:
        if getattr(c, "usage", None):
            usage = c.usage
        if not c.choices:
            continue
        ch = c.choices[0]
        if ch.delta is not None and ch.delta.content:
            if res.ttft is None:
                res.ttft = time.perf_counter() - t0
            chunks += 1
        if ch.finish_reason:
            res.finish = ch.finish_reason
    if usage is not None:
        res.tokens, res.prompt_tokens, res.from_usage = usage.completion_tokens, usage.prompt_tokens, True
    else:
        res.tokens = chunks


def one_request(client, model: str, i: int, max_tokens: int, stream: bool) -> Result:
    res = Result()
    kwargs = dict(model=model, messages=messages_for(i), max_tokens=max_tokens, temperature=0.8, top_p=0.95,
                  seed=1000 + i, extra_body=dict(SAMPLING))
    t0 = time.perf_counter()
    try:
        if not stream:
            r = client.chat.completions.create(**kwargs)
            res.tokens = r.usage.completion_tokens
            res.prompt_tokens = r.usage.prompt_tokens
            res.finish = r.choices[0].finish_reason
            res.from_usage = True
        else:
            read_stream(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs),
                        res, t0)  # fmt: skip
    except Exception as e:  # counted (as cut short for streams), never fatal
        res.error = f"{type(e).__name__}: {e}"
    res.latency = time.perf_counter() - t0
    return res


def run_load(srv: ServerProcess, args: argparse.Namespace, stream: bool, request=None) -> RunStats:
    """``args.clients`` clients at once, each sending ``args.requests`` requests one after the other.

    ``request(client, model, i, max_tokens) -> Result`` sends request ``i`` (default: this bench's
    ``one_request``); the wall time runs from the moment every client is ready.
    """
    from openai import OpenAI

    if request is None:
        request = lambda client, model, i, tokens: one_request(client, model, i, tokens, stream)  # noqa: E731

    def client_loop(c: int) -> list[Result]:
        client = OpenAI(base_url=srv.url, api_key="none", max_retries=0, timeout=600)
        try:
            return [request(client, srv.model_id, c * args.requests + r, args.tokens) for r in range(args.requests)]
        finally:
            client.close()

    barrier = threading.Barrier(args.clients + 1)

    def worker(c: int) -> list[Result]:
        barrier.wait()
        return client_loop(c)

    pool = ThreadPoolExecutor(args.clients)
    try:
        futs = [pool.submit(worker, c) for c in range(args.clients)]
        barrier.wait()
        t0 = time.perf_counter()
        results = [r for f in futs for r in f.result()]
        wall = time.perf_counter() - t0
    finally:
        # on Ctrl-C do not wait here for the clients: stopping the server makes them fail fast
        pool.shutdown(wait=False, cancel_futures=True)
    return RunStats(srv.name, stream, wall, results)


def warm_up(srv: ServerProcess) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=srv.url, api_key="none", max_retries=0, timeout=120)
    try:
        client.chat.completions.create(model=srv.model_id, messages=messages_for(0), max_tokens=8, temperature=0.0)
    finally:
        client.close()


def bench_server(name: str, args: argparse.Namespace, tuned: bool, modes: list[bool]) -> list[RunStats]:
    srv = SERVERS[name](args, tuned)  # stops its process itself if it fails to come up
    ok = False
    try:
        warm_up(srv)
        out = []
        for stream in modes:
            st = run_load(srv, args, stream)
            out.append(st)
            errors = [r.error for r in st.results if r.error]
            print(f"  {'tuned' if tuned else 'defaults':<8} {srv.name:<17} {'stream' if stream else 'non-stream':<10} "
                  f"{st.tokens:5d} tokens in {st.wall:6.1f} s"
                  + (f"  ({len(errors)} errors, first: {errors[0]})" if errors else ""), flush=True)
        ok = srv.name != "lmnb" or not any(r.error for st in out for r in st.results)
        return out
    finally:
        srv.stop(keep_log=not ok)
        if not ok:
            print(f"  {srv.name} log kept: {srv.log.name}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def fmt(v: Optional[float], spec: str = "6.2f") -> str:
    return format(v, spec) if v is not None else "-".rjust(len(format(0.0, spec)))


def ratio(a: Optional[float], b: Optional[float]) -> float:
    return a / b if a is not None and b else float("nan")


def report(runs: dict[tuple[str, str], list[RunStats]], args: argparse.Namespace) -> list[str]:
    """The table of every run, then the headline ratios; returns the headline lines."""
    n = args.clients * args.requests
    print()
    print(f"model: {os.path.basename(args.model)}, {args.clients} clients x {args.requests} requests x "
          f"{args.tokens} tokens; tuned = --parallel {args.parallel} --ctx {args.ctx} --threads {args.threads}")
    hdr = (f"{'config':<8} {'server':<17} {'mode':<10} {'tokens':>6} {'wall s':>7} {'tok/s':>7} {'ttft50':>6} "
           f"{'p50 s':>6} {'p95 s':>6}  cut short")
    print(hdr)
    print("-" * len(hdr))
    for (config, name), sts in runs.items():
        for st in sts:
            src = "" if all(r.from_usage for r in st.ok) else " (chunks)"
            cut = f"{st.cut_short}/{n}" if st.stream else "-"
            print(f"{config:<8} {name:<17} {'stream' if st.stream else 'non-stream':<10} {st.tokens:6d} {st.wall:7.1f} "
                  f"{st.tps:7.1f} {fmt(st.ttft)} {fmt(st.pct(0.5))} {fmt(st.pct(0.95))}  {cut}{src}")
    print()
    lines = []
    for config in args.configs:
        lm = runs.get((config, "lmnb"), [])
        for other in ("llama-server", "llama_cpp.server"):
            for a, b in zip(lm, runs.get((config, other), [])):
                mode = "streaming" if a.stream else "non-streaming"
                line = f"{config:<8} {mode:<13} lmnb / {other}: throughput {a.tps / b.tps:5.2f}x"
                if a.stream:
                    line += f", time to first token p50 {ratio(a.ttft, b.ttft):5.2f}x"
                    if b.cut_short:
                        line += f" ({other}: {b.cut_short}/{n} streams cut short, not comparable)"
                if other == "llama-server":
                    met = a.tps >= b.tps and (not a.stream or (a.ttft or 0) <= (b.ttft or 0))
                    line += f"  (target >= 1.0x, ttft <= 1.0x): {'met' if met else 'below target'}"
                lines.append(line)
    if "llama-server" in args.servers and not os.environ.get("LLAMA_SERVER"):
        lines.append("llama-server: skipped (set LLAMA_SERVER to a llama-server binary to include it)")
    for line in lines:
        print(line)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--clients", "-n", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--requests", "-r", type=int, default=4,
                    help="requests per client, one after the other (default 4)")
    ap.add_argument("--tokens", "-t", type=int, default=64, help="max_tokens per request (default 64)")
    ap.add_argument("--threads", type=int, help="threads, tuned (default: physical cores)")
    ap.add_argument("--ctx", type=int, default=16384, help="context size, tuned (default 16384)")
    ap.add_argument("--parallel", type=int, default=8, help="sequences decoded together, tuned (default 8)")
    ap.add_argument("--configs", default="defaults,tuned", help="defaults, tuned or both (default both)")
    ap.add_argument("--servers", default="lmnb,llama-server,llama_cpp.server",
                    help="which servers (default all three; llama-server only with $LLAMA_SERVER)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stream", dest="modes", action="store_const", const=[True], help="streaming only (default)")
    mode.add_argument("--no-stream", dest="modes", action="store_const", const=[False], help="non-streaming only")
    mode.add_argument("--both", dest="modes", action="store_const", const=[False, True], help="both modes")
    ap.add_argument("--quick", action="store_true",
                    help="defaults only, 2 clients x 1 request x 16 tokens (CI smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.requests, args.tokens, args.configs = 2, 1, 16, "defaults"
    args.configs = [c for c in args.configs.split(",") if c]
    args.servers = [s for s in args.servers.split(",") if s]
    if bad := [c for c in args.configs if c not in ("defaults", "tuned")] + [s for s in args.servers if s not in SERVERS]:
        ap.error(f"unknown: {', '.join(bad)}")
    modes = args.modes or [True]
    resolve_common(ap, args)
    runs: dict[tuple[str, str], list[RunStats]] = {}
    try:
        for config in args.configs:
            for name in args.servers:
                if name == "llama-server" and not os.environ.get("LLAMA_SERVER"):
                    continue
                runs[(config, name)] = bench_server(name, args, config == "tuned", modes)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    report(runs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
