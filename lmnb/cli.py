"""The ``lmnb`` command: the same verbs from a terminal.

    lmnb chat "Explain attention in two sentences."
    lmnb info smollm2
    lmnb serve smollm2 --port 1234
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _cmd_chat(args: argparse.Namespace) -> int:
    from . import api
    from .options import sampling_from_args

    params = sampling_from_args(args)
    prompt = " ".join(args.prompt) if args.prompt else sys.stdin.read()
    if not prompt.strip():
        print("lmnb chat: give a prompt (as arguments or on stdin)", file=sys.stderr)
        return 2
    api.load(args.model, n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
    req = api.chat(prompt, system=args.system, stream=True, **params)
    try:
        for delta in req:
            sys.stdout.write(delta)
            sys.stdout.flush()
    except KeyboardInterrupt:
        req.cancel()
        req.result()
        sys.stdout.write("\n[interrupted]\n")
        return 130
    result = req.result()
    sys.stdout.write("\n")
    if not args.quiet:
        print(f"[{result.model} · {result.stats_line()}]", file=sys.stderr)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import api

    info = api.info(args.model)
    if args.json:
        import dataclasses
        import json

        d = dataclasses.asdict(info)
        d.pop("chat_template", None)
        print(json.dumps(d, indent=2))
    else:
        print(info.describe())
        print(f"path: {info.path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import time

    from . import api
    from .server import serve

    info = api.load(args.model, n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers,
                    n_parallel=args.parallel)
    srv = serve(host=args.host, port=args.port, api_key=args.api_key, cors=args.cors)
    # one parseable line first: scripts and tests read the URL from it (port 0 picks one)
    print(f"Serving {info.name} at {srv.url}", flush=True)
    print(srv.status().splitlines()[-1], "· Ctrl-C stops.", file=sys.stderr, flush=True)
    try:
        while srv.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    srv.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .options import add_sampling_arguments

    p = argparse.ArgumentParser(prog="lmnb", description="Run local GGUF models (llama.cpp).")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("chat", help="stream a one-shot answer to stdout")
    c.add_argument("prompt", nargs="*", help="the prompt (read from stdin when omitted)")
    c.add_argument("-m", "--model", help="a .gguf path, smollm2/gemma3, or a cached HF repo id")
    c.add_argument("-s", "--system")
    add_sampling_arguments(c)
    c.add_argument("--ctx", type=int)
    c.add_argument("--threads", type=int)
    c.add_argument("--gpu-layers", dest="gpu_layers")
    c.add_argument("-q", "--quiet", action="store_true", help="no stats line on stderr")
    c.set_defaults(func=_cmd_chat)

    v = sub.add_parser("serve", help="serve a model over an OpenAI-compatible API (foreground)")
    v.add_argument("model", nargs="?", help="a .gguf path, smollm2/gemma3, or a cached HF repo id")
    v.add_argument("--host", help="address to bind (default 127.0.0.1)")
    v.add_argument("--port", type=int, help="port (default 1234; 0 = any free port)")
    v.add_argument("--api-key", dest="api_key")
    v.add_argument("--cors", action="append", metavar="ORIGIN")
    v.add_argument("--ctx", type=int)
    v.add_argument("--threads", type=int)
    v.add_argument("--parallel", type=int, help="requests decoded together")
    v.add_argument("--gpu-layers", dest="gpu_layers")
    v.set_defaults(func=_cmd_serve)

    i = sub.add_parser("info", help="print a model's GGUF metadata")
    i.add_argument("model", nargs="?", help="a .gguf path, smollm2/gemma3, or a cached HF repo id")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import LmnbError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LmnbError, ValueError) as e:
        print(f"lmnb: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
