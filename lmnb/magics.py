"""IPython magics: ``%lm`` (line) and ``%%lm`` (cell), thin layers over ``lmnb.api``."""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import time
from typing import Any, Optional

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from . import api
from .tables import human_bytes
from .config import LM, configure, get_config
from .errors import LmnbError
from .interpolate import interpolate
from .options import add_load_arguments, add_sampling_arguments, load_from_args, sampling_from_args

USAGE = """\
%lm — run local GGUF models (llama.cpp) in this kernel.

Line magic:
  %lm load [MODEL] [--ctx N] [--gpu-layers N|auto|max] [--threads N] [--batch N] [--parallel N]
           [--no-flash-attn] [--no-mmap] [--seed N] [--chat-template JINJA_OR_FILE]
        MODEL: a .gguf path, smollm2 / gemma3 (bundled), a name from %lm models, or a
        Hugging Face repo (owner/repo, owner/repo:Q4_K_M), downloaded first when needed.
        No MODEL: the default model. --as NAME: load it beside the others, under NAME
        (cells choose it with --model NAME); without --as it replaces the default model.
  %lm unload [NAME | --all]       free a model (default: the default model) and its memory
  %lm status                      every loaded model: load options, memory, last tokens/s
  %lm info [MODEL]                GGUF metadata without loading the weights
  %lm models                      local models (bundled, HF cache, models dir, LM Studio,
                                  Ollama) with size, quantization, last use, disk used
  %lm search QUERY [--limit N] [--sort downloads|likes|modified|trending]
                                  GGUF repositories on Hugging Face
  %lm files REPO [--ctx N]        its quantizations: size, memory needed, fits this machine?
  %lm download REPO[:QUANT]       download into the HF cache (Q4_K_M by default); an
                                  interrupted download resumes; --revision R
  %lm rm MODEL                    delete a model lmnb manages, showing the space freed
  %lm set [NAME=VALUE ...]        session defaults, e.g. %lm set temperature=0.2 top_p=0.9
                                  (any LM setting; no arguments lists them)
  %lm ui [PANE]                   the studio: Chat, Models, Parameters, System, Server and
                                  Logs in tabs (or one PANE alone, e.g. %lm ui chat)
  %lm preset [NAME] [--save NAME] [--delete NAME]
                                  sampling presets: list them, apply one (Precise,
                                  Balanced, Creative or your own), save or delete yours
  %lm log [-n N] [--level L]      llama.cpp's log lines (debug, info, warn, error)
  %lm reset [--name CHAT]         forget a conversation
  %lm history [-n N]              the last N recorded generations
  %lm serve [--host H] [--port N] [--api-key KEY] [--cors ORIGIN] [--allow-host NAME]
                                  serve the loaded model over an OpenAI-compatible API
                                  (a thread in this kernel; default http://127.0.0.1:1234/v1)
  %lm serve                       start with the defaults, or show the running server's status
  %lm serve --stop                stop it and free the port
  %lm connect URL [--api-key KEY] [--model NAME]
                                  run %%lm / %%lm chat on another OpenAI-compatible server
                                  (LM Studio, Ollama, llama-server, vLLM, another lmnb)
  %lm disconnect                  back to the in-kernel engine

Cell magic:
  %%lm [options]                  a one-shot answer to the cell text
  %%lm chat [options]             continue a conversation (--name, default 'default')
  %%lm map --over EXPR [-o VAR] [--parallel N] [--schema NAME | --json] [options]
                                  the cell is a template run over every row of EXPR (a list,
                                  df.column or a DataFrame: {item}, {column}), rows decoded in
                                  parallel; results in order (a Series for pandas input)
      -s/--system TEXT  -t/--temperature T  --top-p P  --top-k K  --min-p P
      --repeat-penalty R  --presence-penalty P  --frequency-penalty P
      -n/--max-tokens N  --seed S  --stop STR (repeatable)  -o/--output VAR
      -m/--model NAME   ask this loaded model (see %lm load --as) instead of the default
      --raw (no chat template: continue the text)  --no-stream
      --show-probs      colour each reply token by its probability (alternatives on hover)
      --json            the reply is a JSON object (a grammar makes it so)
      --schema NAME     the reply is JSON matching NAME, a variable holding a pydantic
                        model, dataclass, TypedDict or JSON Schema dict; with --json or
                        --schema, -o stores the parsed object instead of the text
      --grammar NAME    the reply follows the GBNF grammar in the variable NAME
  {name} in the cell is replaced by the variable's value; {{ and }} give literal braces;
  other braces (dicts, JSON, code) are left as typed.

Defaults live in one config object: %config LM  (e.g. %config LM.n_ctx = 8192).
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports problems as IPython UsageErrors instead of exiting the kernel."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if message:
            raise UsageError(message)
        raise _HelpShown()


class _HelpShown(Exception):
    pass


def _generation_args(p: argparse.ArgumentParser) -> None:
    add_sampling_arguments(p)
    p.add_argument("-o", "--output", metavar="VAR", help="store the reply text in this variable")
    p.add_argument("--no-stream", action="store_true", help="show the reply only when complete")


def _cell_parser(mode: str) -> _Parser:
    p = _Parser(prog=f"%%lm {mode}".strip(), add_help=True)
    _generation_args(p)
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("-m", "--model", metavar="NAME", help="the loaded model to ask (default: the default model)")
    if mode != "map":
        p.add_argument("--show-probs", action="store_true",
                       help="colour each reply token by its probability, alternatives on hover")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="reply with a JSON object; -o stores the parsed dict")
    shape.add_argument("--schema", metavar="NAME", help="reply with JSON matching NAME (pydantic model, dataclass, "
                       "TypedDict or JSON Schema dict in the notebook); -o stores the parsed object")
    shape.add_argument("--grammar", metavar="NAME", help="the reply follows the GBNF grammar (llama.cpp's format) "
                       "held in the notebook variable NAME")
    if mode == "chat":
        p.add_argument("--name", default=api.DEFAULT_CONVERSATION, help="conversation name")
    else:
        p.add_argument("--raw", action="store_true", help="no chat template: continue the text as is")
    if mode == "map":
        p.add_argument("--over", required=True, metavar="EXPR",
                       help="the items: a list, a pandas Series (df.column) or a DataFrame in the notebook")
        p.add_argument("--parallel", type=int, default=8, help="rows decoded together (default 8)")
    return p


def _load_parser() -> _Parser:
    p = _Parser(prog="%lm load")
    p.add_argument("model", nargs="?", help="a .gguf path, smollm2 / gemma3, a name from %%lm models, or owner/repo")
    p.add_argument("--as", dest="name", metavar="NAME", help="load beside the other models, under NAME")
    add_load_arguments(p)
    p.add_argument("--seed", type=int, help="the seed stored with the model (-1 = random per request)")
    return p


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class _Text:
    """Plain text output (load progress, with a bar in HTML), updatable in place through a display handle."""

    def __init__(self, text: str, fraction: Optional[float] = None) -> None:
        self.text, self.fraction = text, fraction

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        if self.fraction is None:
            return {"text/plain": self.text}
        from .markup import html

        view = html('<div><progress value="{:.3f}" max="1" style="width:16em"></progress> {}</div>',
                    self.fraction, self.text)
        return {"text/plain": self.text, "text/html": str(view)}


@magics_class
class LMMagics(Magics):
    """The ``%lm`` / ``%%lm`` magics."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.config_obj = get_config()
        # `%config LM.x = y` finds configurables by class name in shell.configurables.
        if self.config_obj not in shell.configurables:
            shell.configurables.append(self.config_obj)
        self.config_obj.update_config(shell.config)

    @line_cell_magic
    def lm(self, line: str = "", cell: Optional[str] = None) -> None:
        try:
            if cell is None:
                return self._line(line)
            return self._cell(line, cell)
        except _HelpShown:
            return None
        except LmnbError as e:
            raise UsageError(str(e)) from None
        except ValueError as e:
            raise UsageError(str(e)) from None

    lm.__doc__ = USAGE

    # ------------------------------------------------------------------------------------------
    def _line(self, line: str) -> None:
        argv = shlex.split(line)
        if not argv:
            return self._status()
        cmd, rest = argv[0], argv[1:]
        handler = getattr(self, f"_cmd_{cmd}", None)
        if handler is None:
            raise UsageError(f"unknown %lm command {cmd!r}.\n\n{USAGE}")
        return handler(rest)

    def _cmd_load(self, argv: list[str]) -> None:
        from IPython.display import display

        args = _load_parser().parse_args(argv)
        opts = load_from_args(args)
        if args.seed is not None:
            opts["seed"] = args.seed
        if api.status().backend != "local" and args.name is None:
            print("Disconnected from the remote server: generations run on this local model.")
        from .library import resolve

        # Download first (its own progress bar) so "Loading…" means loading.
        args.model = resolve(args.model, download=True)
        name = os.path.basename(args.model)
        handle = display(_Text(f"Loading {name}…", 0.0), display_id=True)
        last = [0.0]

        def progress(fraction: float) -> None:  # llama.cpp's load-progress callback
            now = time.monotonic()
            if now - last[0] > 0.1 or fraction >= 1.0:
                last[0] = now
                handle.update(_Text(f"Loading {name}… {fraction * 100:.0f}%", fraction))

        t0 = time.perf_counter()
        try:
            info = api.load(args.model, name=args.name, progress=progress, **opts)
        except KeyboardInterrupt:
            handle.update(_Text("Loading cancelled."))
            raise
        except Exception:
            handle.update(_Text("Loading failed."))
            raise
        dt = time.perf_counter() - t0
        o = api.get_engine(args.name).status().options
        named = f" as {args.name!r}" if args.name else ""
        handle.update(
            _Text(
                f"Loaded {info.describe()}{named}\n"
                f"in {dt:.1f} s · context {o.n_ctx} · threads {o.n_threads} · "
                f"gpu layers {o.n_gpu_layers} · {info.path}"
            )
        )

    def _cmd_unload(self, argv: list[str]) -> None:
        p = _Parser(prog="%lm unload")
        p.add_argument("name", nargs="?", help="the model to unload (default: the default model)")
        p.add_argument("--all", action="store_true", help="unload every model")
        args = p.parse_args(argv)
        before = api.status().rss_bytes
        had = api.unload(args.name, all=args.all)
        after = api.status().rss_bytes
        what = "every model" if args.all else (repr(args.name) if args.name else "the default model")
        if had:
            print(f"Unloaded {what}; process memory {human_bytes(before)} -> {human_bytes(after)}.")
        else:
            print("No model was loaded." if args.all or not args.name else f"No loaded model is called {args.name!r}.")

    def _cmd_status(self, argv: list[str]) -> None:
        self._status()

    def _status(self) -> None:
        st = api.status()
        if st.backend != "local":
            tps = "-" if st.last_tokens_per_s is None else f"{st.last_tokens_per_s:.1f} tok/s"
            print(f"Connected to {st.backend}; {st.requests_served} requests served, last {tps}.\n"
                  "`%lm disconnect` goes back to the local engine.")
            return
        if not st.models:
            print(f"No model loaded (process memory {human_bytes(st.rss_bytes)}). Load one with `%lm load`.")
            return
        blocks = []
        for loaded in st.models:
            e = api.get_engine(loaded.name)
            one = e.status()
            o, m = one.options, one.model
            tps = "-" if one.last_tokens_per_s is None else f"{one.last_tokens_per_s:.1f} tok/s"
            title = "" if len(st.models) == 1 else f"[{loaded.name}{', on demand' if loaded.on_demand else ''}]\n"
            blocks.append(
                f"{title}Model:    {m.describe()}\n"
                f"File:     {m.path}\n"
                f"Options:  context {o.n_ctx}, gpu layers {o.n_gpu_layers}, "
                f"threads {o.n_threads}, batch {o.n_batch}, parallel {o.n_parallel}, "
                f"flash attention {'on' if o.flash_attn else 'off'}, mmap {'on' if o.use_mmap else 'off'}\n"
                f"Memory:   weights and context {human_bytes(one.model_bytes)}\n"
                f"Speed:    last {tps}; {one.requests_served} requests served, {one.queue_depth} queued"
            )
        blocks.append(f"Process memory {human_bytes(st.rss_bytes)} for {len(st.models)} model(s).")
        print("\n\n".join(blocks))

    def _cmd_serve(self, argv: list[str]) -> None:
        from .server import current, serve

        p = _Parser(prog="%lm serve")
        p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
        p.add_argument("--port", type=int, help="port (default 1234; 0 = any free port)")
        p.add_argument("--api-key", dest="api_key", help="require 'Authorization: Bearer KEY'")
        p.add_argument("--cors", action="append", metavar="ORIGIN", help="allow browser calls from ORIGIN")
        p.add_argument("--allow-host", dest="allowed_hosts", action="append", metavar="NAME",
                       help="also answer requests addressed to NAME (Host header), besides localhost")
        p.add_argument("--stop", action="store_true", help="stop the server")
        p.add_argument("--status", action="store_true", help="show the server's state")
        args = p.parse_args(argv)
        srv = current()
        if args.stop:
            if srv is None:
                print("No server is running.")
                return
            url = srv.url
            srv.stop()
            print(f"Stopped the server at {url}.")
            return
        given = (args.host, args.port, args.api_key, args.cors, args.allowed_hosts)
        starting = any(v is not None for v in given)
        if args.status or (srv is not None and not starting):
            print(srv.status() if srv is not None else "No server is running; start one with `%lm serve`.")
            return
        srv = serve(host=args.host, port=args.port, api_key=args.api_key, cors=args.cors,
                    allowed_hosts=args.allowed_hosts)
        print(srv.status())
        if not api.get_engine().loaded:
            print("No model is loaded yet: requests get 503 until `%lm load`.")
        print(f"Try: openai.OpenAI(base_url={srv.url!r}, api_key={srv.api_key or 'any'!r})")

    def _cmd_connect(self, argv: list[str]) -> None:
        p = _Parser(prog="%lm connect")
        p.add_argument("url", help="an OpenAI-compatible base URL, e.g. http://localhost:1234/v1")
        p.add_argument("--api-key", dest="api_key")
        p.add_argument("--model")
        args = p.parse_args(argv)
        backend = api.connect(args.url, api_key=args.api_key, model=args.model)
        others = [m for m in backend.available if m != backend.model]
        more = f" (also available: {', '.join(others[:8])})" if others else ""
        print(f"Connected to {backend.url}, model {backend.model!r}{more}.\n"
              "%%lm and %%lm chat now run there; `%lm disconnect` returns to the local engine.")

    def _cmd_disconnect(self, argv: list[str]) -> None:
        print("Back to the local engine." if api.disconnect() else "Not connected to a remote server.")

    def _cmd_info(self, argv: list[str]) -> None:
        p = _Parser(prog="%lm info")
        p.add_argument("model", nargs="?")
        args = p.parse_args(argv)
        print(api.info(args.model).describe())

    def _cmd_models(self, argv: list[str]) -> None:
        from IPython.display import display

        _Parser(prog="%lm models").parse_args(argv)
        display(api.models())

    def _cmd_search(self, argv: list[str]) -> None:
        from IPython.display import display

        p = _Parser(prog="%lm search")
        p.add_argument("query", nargs="*")
        p.add_argument("--limit", type=int, default=20)
        p.add_argument("--sort", default="downloads")
        args = p.parse_args(argv)
        display(api.search(" ".join(args.query), limit=args.limit, sort=args.sort))

    def _cmd_files(self, argv: list[str]) -> None:
        from IPython.display import display

        from .hub import files

        p = _Parser(prog="%lm files")
        p.add_argument("repo")
        p.add_argument("--ctx", type=int, dest="n_ctx", help="context length for the memory estimate")
        p.add_argument("--revision")
        args = p.parse_args(argv)
        display(files(args.repo, revision=args.revision, n_ctx=args.n_ctx))

    def _cmd_download(self, argv: list[str]) -> None:
        p = _Parser(prog="%lm download")
        p.add_argument("model", help="owner/repo, owner/repo:QUANT or owner/repo/file.gguf")
        p.add_argument("--quant")
        p.add_argument("--revision")
        args = p.parse_args(argv)
        done = api.download(args.model, quant=args.quant, revision=args.revision)
        print(f"{done}\nLoad it with: %lm load {done.ref}")

    def _cmd_rm(self, argv: list[str]) -> None:
        from .tables import human_bytes

        p = _Parser(prog="%lm rm")
        p.add_argument("model")
        args = p.parse_args(argv)
        freed = api.rm(args.model)
        print(f"Deleted {args.model}: {human_bytes(freed)} freed. {api.models().summary()}")

    def _cmd_set(self, argv: list[str]) -> None:
        cfg = get_config()
        if not argv:
            for name in sorted(LM.class_own_traits(config=True)):
                print(f"{name} = {getattr(cfg, name)!r}")
            return
        values = {}
        for item in argv:
            if "=" not in item:
                raise UsageError(f"%lm set: expected NAME=VALUE, got {item!r}")
            name, value = item.split("=", 1)
            values[name.strip().replace("-", "_")] = _parse_value(value)
        try:
            configure(**values)
        except Exception as e:
            raise UsageError(f"%lm set: {e}") from None
        print(", ".join(f"{k} = {getattr(cfg, k)!r}" for k in values))

    def _cmd_ui(self, argv: list[str]) -> None:
        from IPython.display import display

        from . import widgets
        from .widgets.studio import TABS, studio

        p = _Parser(prog="%lm ui")
        p.add_argument("pane", nargs="?", type=str.lower, choices=[t.lower() for t in TABS])
        args = p.parse_args(argv)
        display(studio() if args.pane is None else getattr(widgets, args.pane.capitalize())())

    def _cmd_preset(self, argv: list[str]) -> None:
        from . import presets

        p = _Parser(prog="%lm preset")
        p.add_argument("name", nargs="?", help="apply this preset")
        p.add_argument("--save", metavar="NAME", help="save the current sampling settings as NAME")
        p.add_argument("--delete", metavar="NAME", help="delete your preset NAME")
        args = p.parse_args(argv)
        if args.save:
            values = presets.save(args.save)
            print(f"Saved preset {args.save!r}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
        elif args.delete:
            presets.delete(args.delete)
            print(f"Deleted preset {args.delete!r}.")
        elif args.name:
            values = presets.apply(args.name)
            print(f"Preset {args.name!r}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
        else:
            for name, values in presets.presets().items():
                tag = "built-in" if name in presets.BUILTIN else "yours"
                print(f"{name} ({tag}): " + ", ".join(f"{k}={v!r}" for k, v in values.items()))

    def _cmd_log(self, argv: list[str]) -> None:
        p = _Parser(prog="%lm log")
        p.add_argument("-n", type=int, default=50)
        p.add_argument("--level", choices=["debug", "info", "warn", "error"])
        args = p.parse_args(argv)
        recs = api.logs(level=args.level, last=args.n)
        print("\n".join(str(r) for r in recs) if recs else "(no llama.cpp log lines yet)")

    def _cmd_reset(self, argv: list[str]) -> None:
        p = _Parser(prog="%lm reset")
        p.add_argument("--name", default=api.DEFAULT_CONVERSATION)
        p.add_argument("--all", action="store_true")
        args = p.parse_args(argv)
        api.reset(None if args.all else args.name)
        print("All conversations cleared." if args.all else f"Conversation {args.name!r} cleared.")

    def _cmd_history(self, argv: list[str]) -> None:
        from IPython.display import display

        p = _Parser(prog="%lm history")
        p.add_argument("-n", type=int, default=10)
        args = p.parse_args(argv)
        rows = api.history(last=args.n)
        if hasattr(rows, "empty"):
            if rows.empty:
                print("No generations recorded yet.")
                return
            cols = ["time", "model", "kind", "seed", "completion_tokens", "generation_tokens_per_s", "output"]
            display(rows[[c for c in cols if c in rows.columns]])
            return
        for r in rows:
            print(f"{r['time']}  {r['model']}  seed={r['seed']}  {r['output'][:60]!r}")

    # ------------------------------------------------------------------------------------------
    def _cell(self, line: str, cell: str) -> None:
        from .display import StreamingReply, reply_metadata

        argv = shlex.split(line)
        mode = ""
        if argv and argv[0] in ("chat", "map"):
            mode, argv = argv[0], argv[1:]
        args = _cell_parser(mode).parse_args(argv)
        if mode == "map":
            return self._cell_map(args, cell)
        text = interpolate(cell, self.shell.user_ns).strip()
        if not text:
            raise UsageError("the cell is empty: write a prompt below %%lm")
        params = sampling_from_args(args)
        schema = "json" if args.json else self._user_schema(args.schema) if args.schema else None
        if schema is not None:
            params["schema"] = schema
        if args.grammar:
            params["grammar"] = self._user_grammar(args.grammar)
        if args.show_probs:
            params["logprobs"] = 5
        if args.model:
            params["model"] = args.model
        if mode == "chat":
            req = api.chat(text, system=args.system, conversation=args.name, stream=True, **params)
            kind = "chat"
        elif args.raw:
            req = api.complete(text, stream=True, **params)
            kind = "complete"
        else:
            req = api.chat(text, system=args.system, stream=True, **params)
            kind = "chat"

        cfg = get_config()
        out = StreamingReply(markdown=cfg.markdown, stream=cfg.stream and not args.no_stream)
        fence = schema is not None and cfg.markdown
        if fence:
            out.add("```json\n")  # an unclosed fence: the streamed text already shows as code
        interrupted = False
        try:
            for event, payload in req.events():
                if event == "delta":
                    out.add(payload)
                else:
                    out.progress(*payload)
        except KeyboardInterrupt:
            interrupted = True
            req.cancel()
        result = req.result()
        path = req.model_path
        meta = reply_metadata(result, model_path=path, sha256=api.model_sha256(path, wait=False) if path else None,
                              kind=kind)
        note = None
        if interrupted:
            note = "[interrupted]"
        elif result.finish_reason == "length":
            note = f"[stopped at max_tokens={result.params.max_tokens}]"
        out.finish(self._as_json_block(result, fence) if schema is not None else result, meta, note=note)
        if args.show_probs and result.logprobs:
            from IPython.display import display

            from .token_view import ProbabilityView

            view = ProbabilityView(result.logprobs)
            display({"text/html": view._repr_html_(), "text/plain": repr(view)}, raw=True)
        if interrupted:
            if args.output and schema is None:
                self.shell.user_ns[args.output] = result.text
            # Re-raise so the cell is marked interrupted and "Run All" stops here.
            raise KeyboardInterrupt
        if result.parse_error is not None:
            raise result.parse_error  # the reply is shown above; say why there is no object
        if args.output:
            self.shell.user_ns[args.output] = result.parsed if schema is not None else result.text

    def _cell_map(self, args: argparse.Namespace, cell: str) -> None:
        """``%%lm map --over df.col -o results``: the cell is a template filled from each row."""
        from IPython.display import display

        from .batch import map as lm_map

        template = cell.strip()
        if not template:
            raise UsageError("the cell is empty: write the prompt template below %%lm map")
        try:
            items = eval(args.over, self.shell.user_ns)  # an expression the user typed, in their namespace
        except Exception as e:
            raise UsageError(f"--over {args.over}: {type(e).__name__}: {e}") from None
        params = sampling_from_args(args)
        schema = "json" if args.json else self._user_schema(args.schema) if args.schema else None
        if args.grammar:
            params["grammar"] = self._user_grammar(args.grammar)
        out = lm_map(template, items, schema=schema, parallel=args.parallel, system=args.system, raw=args.raw,
                     model=args.model, **params)  # fmt: skip
        if args.output:
            self.shell.user_ns[args.output] = out
        stats = out.attrs["lmnb"]["stats"] if hasattr(out, "attrs") else out.stats
        errors = out.attrs["lmnb"]["errors"] if hasattr(out, "attrs") else out.errors
        print(f"{stats['items']} items in {stats['seconds']:.1f} s · {stats['completion_tokens']} tokens · "
              f"{stats['tokens_per_s']:.0f} tok/s" + (f" · {len(errors)} failed" if errors else "")
              + (f" · stored in {args.output}" if args.output else ""))  # fmt: skip
        if not args.output:
            display(out)

    def _user_grammar(self, name: str) -> str:
        """The GBNF text in the notebook variable ``name`` (used by ``--grammar``)."""
        value = self.shell.user_ns.get(name)
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"--grammar {name}: no variable {name!r} holding GBNF text in the notebook, e.g. "
                             "g = 'root ::= \"yes\" | \"no\"'")
        return value

    def _user_schema(self, name: str) -> Any:
        """The notebook variable ``name`` (``a.b`` for an attribute) used by ``--schema``."""
        head, *rest = name.split(".")
        if head not in self.shell.user_ns:
            raise UsageError(f"--schema {name}: no variable {head!r} in the notebook; define a pydantic model, "
                             "dataclass, TypedDict or JSON Schema dict first")
        obj = self.shell.user_ns[head]
        for attr in rest:
            if not hasattr(obj, attr):
                raise UsageError(f"--schema {name}: {head} has no attribute {attr!r}")
            obj = getattr(obj, attr)
        from .structured import grammar

        try:
            grammar(obj)  # cached, so chat() finds it ready; checked here to name the option
        except (TypeError, ValueError) as e:
            raise UsageError(f"--schema {name}: {e}") from None
        return obj

    @staticmethod
    def _as_json_block(result: Any, fence: bool) -> Any:
        """``result`` with its text indented (when it is whole JSON) and, for Markdown, fenced."""
        import dataclasses
        import json

        text = result.text
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:  # cut off: shown as generated
            pass
        return dataclasses.replace(result, text=f"```json\n{text}\n```" if fence else text)


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(LMMagics(ipython))
    from .labcomm import register

    register(ipython)  # the JupyterLab extension's status item and panel talk through it


def unload_ipython_extension(ipython: Any) -> None:
    pass
