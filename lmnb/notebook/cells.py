"""``%%lm`` cells: a prompt (``%%lm``), a chat turn (``%%lm chat``), a prompt over rows (``%%lm map``).

The reply streams into the cell's output; the notebook variables a cell names (``--tools``,
``--schema``, ``--grammar``, ``--over``, ``-o``) are read from and written to the user's namespace.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, Optional

from IPython.core.error import UsageError

from .. import api
from ..config import get_config
from ..interpolate import interpolate
from ..options import sampling_from_args
from .magic_parsers import cell_parser


class Cells:
    """Runs ``%%lm`` cells in ``shell`` (an IPython shell)."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell

    def run(self, line: str, cell: str) -> None:
        """Run one ``%%lm`` cell (``line`` is what follows ``%%lm``)."""
        from .display import StreamingReply, reply_metadata

        argv = shlex.split(line)
        mode = ""
        if argv and argv[0] in ("chat", "map"):
            mode, argv = argv[0], argv[1:]
        args = cell_parser(mode).parse_args(argv)
        if mode == "map":
            return self._map(args, cell)
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
        if args.lora:
            params["lora"] = [] if [x.lower() for x in args.lora] == ["none"] else args.lora
        if args.docs:
            params["docs"] = args.docs
        if args.tools:
            if schema is not None or args.grammar or getattr(args, "raw", False):
                raise UsageError("--tools cannot be combined with --json, --schema, --grammar or --raw")
            return self._tools(args, text, params, conversation=args.name if mode == "chat" else None)
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
                elif event == "reasoning":
                    out.think(payload)
                elif event == "progress":
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

            from ..teaching.token_view import ProbabilityView

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

    def _tools(self, args: argparse.Namespace, text: str, params: dict, conversation: Optional[str]) -> None:
        """``%%lm chat --tools f,g``: each tool call shown as it runs, then the answer."""
        from IPython.display import display

        from .display import StreamingReply, reply_metadata, tool_step

        tools: list = []
        for name in (n.strip() for n in args.tools.split(",")):
            if name.startswith("mcp:"):
                from ..tools.mcp import tools_of

                tools += tools_of([name[4:]])
                continue
            fn = self.shell.user_ns.get(name)
            if fn is None or not callable(fn):
                raise UsageError(f"--tools: {name!r} is not a function in the notebook")
            tools.append(fn)
        steps: list = []

        def on_step(step) -> None:
            steps.append(step)
            display(tool_step(step), raw=True)

        try:
            result = api.chat(text, system=args.system, conversation=conversation, tools=tools,
                              max_steps=args.max_steps, confirm=args.confirm, on_step=on_step,
                              tool_choice=args.tool_choice if args.tool_choice in ("auto", "required", "none")
                              else {"type": "function", "function": {"name": args.tool_choice}}, **params)  # fmt: skip
        except KeyboardInterrupt:
            display({"text/plain": f"[interrupted after {len(steps)} tool call(s)]"}, raw=True)
            raise
        cfg = get_config()
        out = StreamingReply(markdown=cfg.markdown, stream=False)
        out.add(result.text)
        meta = reply_metadata(result, model_path=None, sha256=None, kind="chat")
        out.finish(result, meta, note=f"[{len(result.steps)} tool calls]" if result.steps else None)
        if args.output:
            self.shell.user_ns[args.output] = result.text

    def _map(self, args: argparse.Namespace, cell: str) -> None:
        """``%%lm map --over df.col -o results``: the cell is a template filled from each row."""
        from IPython.display import display

        from ..batch import map as lm_map

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
                     model=args.model, checkpoint=args.checkpoint, **params)  # fmt: skip
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
        from ..structured import grammar

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

