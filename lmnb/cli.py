"""The ``lmnb`` command: the same verbs from a terminal.

    lmnb chat "Explain attention in two sentences."
    lmnb info smollm2
    lmnb serve smollm2 --port 1234
    lmnb search smollm2
    lmnb pull bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M
    lmnb ls
    lmnb rm bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _cmd_chat(args: argparse.Namespace) -> int:
    from . import api
    from .options import load_from_args, sampling_from_args

    params = sampling_from_args(args)
    prompt = " ".join(args.prompt) if args.prompt else sys.stdin.read()
    if not prompt.strip():
        print("lmnb chat: give a prompt (as arguments or on stdin)", file=sys.stderr)
        return 2
    api.load(args.model, **load_from_args(args))
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
    from .config import get_config
    from .options import load_from_args
    from .server import serve

    cfg = get_config()
    cfg.jit_load = True  # a client naming another local model gets it loaded (after a memory check)
    if args.idle_unload is not None:
        cfg.idle_unload = args.idle_unload
    if args.context_overflow is not None:  # the default of requests that do not say
        cfg.context_overflow = args.context_overflow
    info = api.load(args.model, **load_from_args(args))
    srv = serve(host=args.host, port=args.port, api_key=args.api_key, cors=args.cors,
                allowed_hosts=args.allowed_hosts)
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


def _cmd_search(args: argparse.Namespace) -> int:
    from .hub import search

    print(search(" ".join(args.query), limit=args.limit, sort=args.sort))
    return 0


def _cmd_files(args: argparse.Namespace) -> int:
    from .hub import files

    print(files(args.repo, revision=args.revision, n_ctx=args.n_ctx))
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from .hub import download

    def note(msg: str) -> None:
        print(msg, file=sys.stderr)

    done = download(args.model, quant=args.quant, revision=args.revision, progress=not args.quiet, note=note)
    print(done.path)  # stdout: just the path, for scripts
    print(f"{done}", file=sys.stderr)
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from . import api

    ms = api.models()
    if args.json:
        import dataclasses
        import json

        print(json.dumps([dataclasses.asdict(m) for m in ms], indent=2))
    else:
        print(ms)
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    from . import api
    from .sources.library import find
    from .tables import human_bytes

    m = find(args.model)
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"lmnb rm: add --yes to delete {m.name} without a question", file=sys.stderr)
            return 2
        answer = input(f"Delete {m.name} ({human_bytes(m.size)}, {m.source})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Kept.", file=sys.stderr)
            return 1
    freed = api.rm(m.name)
    print(f"Deleted {m.name}: {human_bytes(freed)} freed. {api.models().summary()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .options import (
        add_download_arguments,
        add_files_arguments,
        add_load_arguments,
        add_param_argument,
        add_sampling_arguments,
        add_search_arguments,
        add_serve_arguments,
    )
    from .params import BY_NAME

    p = argparse.ArgumentParser(prog="lmnb", description="Run local GGUF models (llama.cpp).")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("chat", help="stream a one-shot answer to stdout")
    c.add_argument("prompt", nargs="*", help="the prompt (read from stdin when omitted)")
    c.add_argument("-m", "--model", help="a .gguf path, smollm2/gemma3, or a cached HF repo id")
    c.add_argument("-s", "--system")
    add_sampling_arguments(c)
    add_load_arguments(c)
    c.add_argument("-q", "--quiet", action="store_true", help="no stats line on stderr")
    c.set_defaults(func=_cmd_chat)

    v = sub.add_parser("serve", help="serve a model over an OpenAI-compatible API (foreground)")
    v.add_argument("model", nargs="?", help="a .gguf path, smollm2/gemma3, or a cached HF repo id")
    add_serve_arguments(v)
    add_load_arguments(v)
    v.add_argument("--idle-unload", type=float, metavar="SECONDS",
                   help="unload models that requests loaded on demand after this long idle (0 = never)")
    add_param_argument(v, BY_NAME["context_overflow"])  # the requests' default (each may set its own)
    v.set_defaults(func=_cmd_serve)

    i = sub.add_parser("info", help="print a model's GGUF metadata")
    i.add_argument("model", nargs="?", help="a .gguf path, smollm2/gemma3, or a cached HF repo id")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)

    s = sub.add_parser("search", help="search Hugging Face for GGUF repositories")
    add_search_arguments(s)
    s.set_defaults(func=_cmd_search)

    f = sub.add_parser("files", help="a repository's quantizations, sizes and whether they fit here")
    add_files_arguments(f)
    f.set_defaults(func=_cmd_files)

    d = sub.add_parser("pull", help="download a model into the HF cache (resumes; prints its path)")
    add_download_arguments(d)
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_pull)

    ls = sub.add_parser("ls", help="list local models and the disk space they use")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_cmd_ls)

    r = sub.add_parser("rm", help="delete a model from the HF cache or the models dir")
    r.add_argument("model")
    r.add_argument("-y", "--yes", action="store_true", help="do not ask")
    r.set_defaults(func=_cmd_rm)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import DownloadCancelled, LmnbError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DownloadCancelled as e:  # Ctrl-C during a pull: say how to resume, exit as interrupted
        print(f"\nlmnb: {e}", file=sys.stderr)
        return 130
    except (LmnbError, ValueError) as e:
        print(f"lmnb: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
