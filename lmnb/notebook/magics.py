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

from .. import api
from ..config import LM, configure, get_config
from ..errors import LmnbError
from ..options import load_from_args
from ..tables import human_bytes
from .cells import Cells
from .magic_parsers import HelpShown, parser, usage


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text

# A model file without a chat template (often a base model, as the bundled Gemma 3 270M) gets
# ChatML, which it was not trained on: say so where the user sees the load, as LM Studio does.
_NO_TEMPLATE = ("\nThis file has no chat template: chats are written in ChatML, which a base model may not "
                "follow (`%%lm --raw` completes text as is; `--chat-template` sets a template).")


class _Text:
    """Plain text output (load progress, with a bar in HTML), updatable in place through a display handle."""

    def __init__(self, text: str, fraction: Optional[float] = None) -> None:
        self.text, self.fraction = text, fraction

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        if self.fraction is None:
            return {"text/plain": self.text}
        from ..markup import html

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
            return Cells(self.shell).run(line, cell)
        except HelpShown:
            return None
        except LmnbError as e:
            raise UsageError(str(e)) from None
        except ValueError as e:
            raise UsageError(str(e)) from None

    lm.__doc__ = usage()

    # ------------------------------------------------------------------------------------------
    def _line(self, line: str) -> None:
        argv = shlex.split(line)
        if not argv:
            return self._status()
        cmd, rest = argv[0], argv[1:]
        args = parser(cmd).parse_args(rest)  # unknown commands and bad flags: a UsageError saying why
        return getattr(self, f"_cmd_{cmd}")(args)

    def _cmd_load(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        opts = load_from_args(args)
        if args.seed is not None:
            opts["seed"] = args.seed
        if api.status().backend != "local" and args.name is None:
            print("Disconnected from the remote server: generations run on this local model.")
        from ..sources.library import resolve

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
            info = api.load(args.model, name=args.name, progress=progress, lora=args.lora, **opts)
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
                + ("" if info.has_chat_template or o.chat_template else _NO_TEMPLATE)
            )
        )

    def _cmd_unload(self, args: argparse.Namespace) -> None:
        before = api.status().rss_bytes
        had = api.unload(args.name, all=args.all)
        after = api.status().rss_bytes
        what = "every model" if args.all else (repr(args.name) if args.name else "the default model")
        if had:
            print(f"Unloaded {what}; process memory {human_bytes(before)} -> {human_bytes(after)}.")
        else:
            print("No model was loaded." if args.all or not args.name else f"No loaded model is called {args.name!r}.")

    def _cmd_status(self, args: Optional[argparse.Namespace] = None) -> None:
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
                + "".join(f"\nLoRA:     {a.name} at scale {a.scale:g} ({a.source or a.path})" for a in e.loras())
            )
        blocks.append(f"Process memory {human_bytes(st.rss_bytes)} for {len(st.models)} model(s).")
        print("\n\n".join(blocks))

    def _cmd_serve(self, args: argparse.Namespace) -> None:
        from ..server import current, serve

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

    def _cmd_connect(self, args: argparse.Namespace) -> None:
        backend = api.connect(args.url[0] if len(args.url) == 1 else args.url, api_key=args.api_key, model=args.model)
        others = [m for m in backend.available if m != backend.model]
        more = f" (also available: {', '.join(others[:8])})" if others else ""
        print(f"Connected to {backend.url}, model {backend.model!r}{more}.\n"
              "%%lm and %%lm chat now run there; `%lm disconnect` returns to the local engine.")

    def _cmd_disconnect(self, args: argparse.Namespace) -> None:
        print("Back to the local engine." if api.disconnect() else "Not connected to a remote server.")

    def _cmd_info(self, args: argparse.Namespace) -> None:
        print(api.info(args.model).describe())

    def _cmd_models(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        display(api.models())

    def _cmd_search(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        display(api.search(" ".join(args.query), limit=args.limit, sort=args.sort))

    def _cmd_files(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        from ..hub import files

        display(files(args.repo, revision=args.revision, n_ctx=args.n_ctx))

    def _cmd_download(self, args: argparse.Namespace) -> None:
        done = api.download(args.model, quant=args.quant, revision=args.revision)
        print(f"{done}\nLoad it with: %lm load {done.ref}")

    def _cmd_rm(self, args: argparse.Namespace) -> None:
        from ..tables import human_bytes

        freed = api.rm(args.model)
        print(f"Deleted {args.model}: {human_bytes(freed)} freed. {api.models().summary()}")

    def _cmd_set(self, args: argparse.Namespace) -> None:
        cfg = get_config()
        if not args.assignments:
            for name in sorted(LM.class_own_traits(config=True)):
                print(f"{name} = {getattr(cfg, name)!r}")
            return
        values = {}
        for item in args.assignments:
            if "=" not in item:
                raise UsageError(f"%lm set: expected NAME=VALUE, got {item!r}")
            name, value = item.split("=", 1)
            values[name.strip().replace("-", "_")] = _parse_value(value)
        try:
            configure(**values)
        except Exception as e:
            raise UsageError(f"%lm set: {e}") from None
        print(", ".join(f"{k} = {getattr(cfg, k)!r}" for k in values))

    def _cmd_ui(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        from .. import widgets
        from ..widgets.studio import studio

        display(studio() if args.pane is None else getattr(widgets, args.pane.capitalize())())

    def _cmd_preset(self, args: argparse.Namespace) -> None:
        from .. import presets

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

    def _cmd_log(self, args: argparse.Namespace) -> None:
        from ..engine.logs import logs

        recs = logs(level=args.level, last=args.n)
        print("\n".join(str(r) for r in recs) if recs else "(no llama.cpp log lines yet)")

    def _cmd_reset(self, args: argparse.Namespace) -> None:
        api.reset(None if args.all else args.name)
        print("All conversations cleared." if args.all else f"Conversation {args.name!r} cleared.")

    def _cmd_mcp(self, args: argparse.Namespace) -> None:
        from ..tools import mcp

        if args.action == "add":
            if not args.name or not args.target:
                raise UsageError("%lm mcp add NAME COMMAND [ARGS...]  or  %lm mcp add NAME URL")
            server = mcp.connect(args.name, args.target[0], *args.target[1:])
            print(f"MCP server {args.name!r}: {len(server.tools())} tools ({', '.join(t.name for t in server.tools())}).")
            return
        if args.action == "remove":
            print(f"Stopped {args.name!r}." if mcp.disconnect(args.name or "") else f"No MCP server {args.name!r}.")
            return
        found = mcp.servers()
        if not found:
            print("No MCP servers. Add one: %lm mcp add NAME COMMAND [ARGS...]  (or a URL)")
        for name, server in found.items():
            state = "running" if server.alive else f"stopped: {server.error}"
            print(f"{name}  ({server.description}; {state})")
            for tool in server.tools():
                print(f"    {tool.name}: {tool.description.splitlines()[0] if tool.description else ''}")

    def _cmd_lora(self, args: argparse.Namespace) -> None:
        from ..adapters import lora
        from ..sources.adapter_files import split_scale

        if args.action == "add":
            if not args.target:
                raise UsageError("%lm lora add PATH[:SCALE] [--name NAME]")
            path, scale = split_scale(args.target)
            rows = lora(path, scale if args.scale is None else args.scale, name=args.name, model=args.model)
        elif args.action in ("scale", "remove"):
            if not args.target or (args.action == "scale" and args.scale is None):
                raise UsageError("%lm lora scale NAME SCALE  or  %lm lora remove NAME")
            rows = lora(args.target, args.scale, remove=args.action == "remove", model=args.model)
        else:
            rows = lora(model=args.model)
        if not rows:
            print("No LoRA adapters. Add one: %lm lora add PATH[:SCALE]  (a GGUF LoRA, a PEFT folder or a repo id)")
        for r in rows:
            alpha = f", alpha {r['alpha']:g}" if r["alpha"] is not None else ""
            print(f"[{r['id']}] {r['name']}  scale {r['scale']:g}{alpha}  ({r['path']})")

    def _cmd_history(self, args: argparse.Namespace) -> None:
        from IPython.display import display

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


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(LMMagics(ipython))
    from .labcomm import register

    register(ipython)  # the JupyterLab extension's status item and panel talk through it


def unload_ipython_extension(ipython: Any) -> None:
    pass
