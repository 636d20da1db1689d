"""Speed of this checkout against an earlier revision, measured in one run, on the bundled model.

    python bench/before_after.py --base 7b181d9 [--rounds 3]

The earlier revision is checked out with ``git worktree`` into a temporary folder. Each round runs
the same workloads in a fresh process for each side, alternating sides, so that a machine busy
for a while slows both alike:

- single stream: one greedy chat reply of 128 tokens (tokens/s of generation);
- ``lmnb.map``: 32 prompts x 48 tokens (tokens/s over the whole job);
- server: 4 streaming clients x 6 requests x 48 tokens through ``lmnb.serve`` (tokens/s).

Prints the median of each side and the ratio (this checkout / base; >= 1.0 is as fast or faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

WORKLOAD = r'''
import json, sys, threading, time
import lmnb

lmnb.load("smollm2", n_ctx=4096)
lmnb.chat("Hi", max_tokens=4, temperature=0)  # warm up
out = {}

r = lmnb.chat("Write a long story about a lighthouse keeper.", max_tokens=128, temperature=0, seed=1)
out["single"] = r.timings.generation_tokens_per_s

prompts = [f"Write two sentences about the number {i}." for i in range(32)]
t0 = time.perf_counter()
res = lmnb.map("{item}", prompts, max_tokens=48, temperature=0, progress=False)
n = sum(c.usage.completion_tokens for c in res.completions if c is not None)
out["map"] = n / (time.perf_counter() - t0)

import httpx
srv = lmnb.serve(port=0)
url = srv.url.rstrip("/") + "/chat/completions"
counted = []

def client(k):
    with httpx.Client(timeout=300) as c:
        for i in range(6):
            body = {"model": "", "messages": [{"role": "user", "content": f"Tell me about city {k}-{i}."}],
                    "max_tokens": 48, "temperature": 0, "stream": True}
            with c.stream("POST", url, json=body) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: ") and '"content"' in line:
                        counted.append(1)

t0 = time.perf_counter()
threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
out["server"] = len(counted) / (time.perf_counter() - t0)
srv.stop()
print("RESULT " + json.dumps(out))
'''


def run(tree: str) -> dict:
    env = {**os.environ, "PYTHONPATH": tree}
    proc = subprocess.run([sys.executable, "-c", WORKLOAD], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"workload failed in {tree}:\n{proc.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="7b181d9", help="the earlier revision (default: before issue 16)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = tempfile.mkdtemp(prefix="lmnb-base-")
    subprocess.run(["git", "-C", here, "worktree", "add", "--detach", base, args.base], check=True,
                   capture_output=True)  # fmt: skip
    try:
        sides: dict[str, list[dict]] = {"base": [], "this": []}
        for i in range(args.rounds):
            for side, tree in (("base", base), ("this", here)) if i % 2 == 0 else (("this", here), ("base", base)):
                sides[side].append(run(tree))
                print(f"round {i + 1} {side}: {sides[side][-1]}", flush=True)
        print(f"\n{'workload':<16}{args.base:>12}{'this':>12}{'ratio':>8}")
        for key, label in (("single", "single stream"), ("map", "map 32x48"), ("server", "server 4 clients")):
            b = statistics.median(r[key] for r in sides["base"])
            t = statistics.median(r[key] for r in sides["this"])
            print(f"{label:<16}{b:>12.1f}{t:>12.1f}{t / b:>8.2f}")
    finally:
        subprocess.run(["git", "-C", here, "worktree", "remove", "--force", base], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
