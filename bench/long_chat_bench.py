"""Time to first token deep into a long chat while other clients stream: lmnb against llama-server.

Each server runs with its defaults (only the model given), in its own subprocess, one after the
other. While C other clients stream stories without pause, one client holds a chat of T turns
(each user turn ~U tokens of text, each reply max R tokens, greedy) that grows to ~3,000 tokens.
Per turn it records the time to first token and the prompt tokens the server reports as cached
(``usage.prompt_tokens_details.cached_tokens``; llama-server: ``timings.cache_n``). A server that
keeps the conversation's cells evaluates only the new turn, so turn T's first token comes about as
fast as turn 2's; one that lost them reads the whole chat again.

    python bench/long_chat_bench.py [--model PATH] [--turns 10] [--others 4] [--user-tokens 250]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import server_bench as sb  # noqa: E402

FACTS = ["the tide", "the harbour wall", "the lighthouse", "the fishing boats", "the market", "the gulls",
         "the old church", "the ferry", "the cliffs", "the school", "the bakery", "the storm"]  # fmt: skip


def user_turn(i: int, tokens: int) -> str:
    """About ``tokens`` tokens of notes (~16 each), different every turn (no shared text to borrow)."""
    body = " ".join(f"Note {i}.{k}: {FACTS[(i + k) % len(FACTS)]} changed at {k + 7} past {i + 1}." for k in range(tokens // 16))
    return f"Here are my notes for day {i + 1}. {body} What stands out? Answer in one sentence."


def chat(srv, args: argparse.Namespace, stop: threading.Event) -> list[tuple[float, int, int]]:
    """(time to first token, prompt tokens, cached prompt tokens) per turn."""
    from openai import OpenAI

    client = OpenAI(base_url=srv.url, api_key="none", max_retries=0, timeout=600)
    messages: list[dict] = []
    out = []
    for i in range(args.turns):
        messages.append({"role": "user", "content": user_turn(i, args.user_tokens)})
        t0 = time.perf_counter()
        ttft, text, usage, extra = None, [], None, {}
        for c in client.chat.completions.create(model=srv.model_id, messages=messages, max_tokens=args.reply,
                                                temperature=0, stream=True, stream_options={"include_usage": True}):  # fmt: skip
            if c.choices and c.choices[0].delta.content:
                ttft = ttft or time.perf_counter() - t0
                text.append(c.choices[0].delta.content)
            usage = c.usage or usage
            extra = (c.model_extra or {}).get("timings") or extra
        details = getattr(usage, "prompt_tokens_details", None)
        cached = (getattr(details, "cached_tokens", None) if details else None) or extra.get("cache_n") or 0
        out.append((ttft or float("nan"), usage.prompt_tokens if usage else 0, int(cached)))
        print(f"    turn {i + 1:2d}: prompt {out[-1][1]:5d} tokens, {out[-1][2]:5d} cached, first token {out[-1][0]:.2f} s",
              flush=True)  # fmt: skip
        messages.append({"role": "assistant", "content": "".join(text)})
    stop.set()
    return out


def others(srv, n: int, stop: threading.Event) -> list[threading.Thread]:
    from openai import OpenAI

    def loop(k: int) -> None:
        client = OpenAI(base_url=srv.url, api_key="none", max_retries=0, timeout=600)
        i = 0
        while not stop.is_set():
            try:
                for _ in client.chat.completions.create(model=srv.model_id, messages=sb.messages_for(k * 100 + i),
                                                        max_tokens=64, temperature=0.8, stream=True):  # fmt: skip
                    if stop.is_set():
                        break
            except Exception:  # noqa: BLE001 - the background load only has to keep going
                pass
            i += 1

    threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    return threads


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF path (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--others", type=int, default=4, help="clients streaming at the same time (default 4)")
    ap.add_argument("--user-tokens", type=int, default=250, help="about this many tokens per user turn")
    ap.add_argument("--reply", type=int, default=48, help="max_tokens per reply (default 48)")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    sb.resolve_common(ap, args)
    names = ["lmnb"] + (["llama-server"] if os.environ.get("LLAMA_SERVER") else [])
    results = {}
    for name in names:
        print(f"  {name} (defaults), {args.others} other clients streaming:", flush=True)
        srv = sb.SERVERS[name](args, False)
        try:
            sb.warm_up(srv)
            stop = threading.Event()
            threads = others(srv, args.others, stop)
            try:
                results[name] = chat(srv, args, stop)
            finally:
                stop.set()
                for t in threads:
                    t.join(60)
        finally:
            srv.stop()
    print()
    for name, turns in results.items():
        ttft, prompt, cached = turns[-1]
        early = turns[1][0]
        print(f"{name:<13} turn {len(turns)}: prompt {prompt} tokens, {cached} cached, first token {ttft:.2f} s "
              f"(turn 2: {early:.2f} s)")
    if len(results) == 2:
        a, b = results["lmnb"][-1][0], results["llama-server"][-1][0]
        print(f"time to first token at turn {args.turns}, lmnb / llama-server: {a / b:.2f}x (target <= 1.0)")
    else:
        print("llama-server: skipped (set LLAMA_SERVER to a llama-server binary to include it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
