"""The ``%lm`` and ``%%lm`` command lines: one parser per command, and ``%lm?`` help built from them.

Sampling and load flags come from ``lmnb.params`` (through ``lmnb.options``), hub flags are
shared with the ``lmnb`` CLI, so the magics, the CLI and their help cannot drift apart.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Callable, Optional

from IPython.core.error import UsageError

from ..batch import MAP_PARALLEL
from ..options import (
    add_download_arguments,
    add_files_arguments,
    add_load_arguments,
    add_sampling_arguments,
    add_search_arguments,
    add_serve_arguments,
)

DEFAULT_CONVERSATION = "default"


class Parser(argparse.ArgumentParser):
    """argparse that reports problems as IPython UsageErrors instead of exiting the kernel."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if message:
            raise UsageError(message)
        raise HelpShown()


class HelpShown(Exception):
    """``--help`` was printed: nothing else to do."""


# --- cell magics --------------------------------------------------------------------------------
CELL_MODES = {
    "": "a one-shot answer to the cell text",
    "chat": "continue a conversation (--name, default 'default')",
    "map": "the cell is a template run over every row of --over (a list, df.column or a DataFrame: "
           "{item}, {column}), rows decoded in parallel; results in order (a Series for pandas input)",
}


def cell_parser(mode: str) -> Parser:
    """``%%lm``, ``%%lm chat`` or ``%%lm map``."""
    p = Parser(prog=f"%%lm {mode}".strip(), description=CELL_MODES[mode], add_help=True)
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("-m", "--model", metavar="NAME", help="the loaded model to ask (default: the default model)")
    p.add_argument("-o", "--output", metavar="VAR", help="store the reply text in this variable")
    p.add_argument("--no-stream", action="store_true", help="show the reply only when complete")
    if mode != "map":
        p.add_argument("--lora", action="append", metavar="NAME[:SCALE]",
                       help="LoRA adapters for this cell (repeatable; 'none': the base model alone)")  # fmt: skip
        p.add_argument("--docs", metavar="LIBRARY", help="answer from this document library (lmnb.docs), citing "
                       "its sources as [1], [2] (with --tools: a search_documents tool)")
    if mode != "map":
        p.add_argument("--show-probs", action="store_true",
                       help="colour each reply token by its probability, alternatives on hover")  # fmt: skip
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="reply with a JSON object; -o stores the parsed dict")
    shape.add_argument("--schema", metavar="NAME", help="reply with JSON matching NAME (pydantic model, dataclass, "
                       "TypedDict or JSON Schema dict in the notebook); -o stores the parsed object")
    shape.add_argument("--grammar", metavar="NAME", help="the reply follows the GBNF grammar (llama.cpp's format) "
                       "held in the notebook variable NAME")
    if mode != "map":
        p.add_argument("--tools", metavar="F,G", help="notebook functions the model may call (run in the kernel, "
                       "their results go back to it); each step is shown")
        p.add_argument("--tool-choice", default="auto", metavar="CHOICE", help="auto (default), required, none, "
                       "or a tool's name: the first request must call it")
        p.add_argument("--max-steps", type=int, default=5, help="rounds of tool calls before the answer (default 5)")
        p.add_argument("--confirm", action="store_true", help="ask before each tool call runs")
    if mode == "chat":
        p.add_argument("--name", default=DEFAULT_CONVERSATION, help="conversation name")
    else:
        p.add_argument("--raw", action="store_true", help="no chat template: continue the text as is")
    if mode == "map":
        p.add_argument("--over", required=True, metavar="EXPR",
                       help="the items: a list, a pandas Series (df.column) or a DataFrame in the notebook")
        p.add_argument("--parallel", type=int, default=MAP_PARALLEL, help=f"rows decoded together (default {MAP_PARALLEL})")
        p.add_argument("--checkpoint", metavar="FILE", help="append each finished row to this JSON-lines file; "
                       "running the cell again redoes only the rows not in it (after a restart too)")  # fmt: skip
    add_sampling_arguments(p)
    return p


# --- line magics --------------------------------------------------------------------------------
def _load() -> Parser:
    p = Parser(prog="%lm load", description="load a model: a .gguf path, smollm2 / gemma3 (bundled), a name from "
               "%lm models, or a Hugging Face repo (owner/repo, owner/repo:Q4_K_M), downloaded first when needed. "
               "No MODEL: the default model. Without --as it replaces the default model.")
    p.add_argument("model", nargs="?", help="the model (default: LM.default_model, else the bundled one)")
    p.add_argument("--as", dest="name", metavar="NAME",
                   help="load beside the other models, under NAME (cells choose it with --model NAME)")
    add_load_arguments(p)
    p.add_argument("--seed", type=int, help="the seed stored with the model (-1 = random per request)")
    p.add_argument("--lora", action="append", metavar="PATH[:SCALE]",
                   help="a LoRA adapter to add (repeatable): a GGUF LoRA, a PEFT folder or a repo id")  # fmt: skip
    return p


def _unload() -> Parser:
    p = Parser(prog="%lm unload", description="free a model and its memory")
    p.add_argument("name", nargs="?", help="the model to unload (default: the default model)")
    p.add_argument("--all", action="store_true", help="unload every model")
    return p


def _plain(prog: str, description: str) -> Callable[[], Parser]:
    return lambda: Parser(prog=prog, description=description)


def _info() -> Parser:
    p = Parser(prog="%lm info", description="a model's GGUF metadata, without loading its weights")
    p.add_argument("model", nargs="?")
    return p


def _search() -> Parser:
    p = Parser(prog="%lm search", description="GGUF repositories on Hugging Face")
    add_search_arguments(p)
    return p


def _files() -> Parser:
    p = Parser(prog="%lm files", description="a repository's quantizations: size, memory needed, fits here?")
    add_files_arguments(p)
    return p


def _download() -> Parser:
    p = Parser(prog="%lm download", description="download into the HF cache (Q4_K_M by default); an interrupted "
               "download resumes")
    add_download_arguments(p)
    return p


def _rm() -> Parser:
    p = Parser(prog="%lm rm", description="delete a model lmnb manages, showing the space freed")
    p.add_argument("model")
    return p


def _set() -> Parser:
    p = Parser(prog="%lm set", description="session defaults, e.g. %lm set temperature=0.2 top_p=0.9 (any LM "
               "setting; no arguments lists them)")
    p.add_argument("assignments", nargs="*", metavar="NAME=VALUE")
    return p


def _ui() -> Parser:
    from ..widgets import TABS

    p = Parser(prog="%lm ui", description="the studio: " + ", ".join(TABS) + " in tabs (or one PANE alone)")
    p.add_argument("pane", nargs="?", type=str.lower, choices=[t.lower() for t in TABS])
    return p


def _preset() -> Parser:
    p = Parser(prog="%lm preset", description="sampling presets: list them, apply one (Precise, Balanced, "
               "Creative or your own), save or delete yours")
    p.add_argument("name", nargs="?", help="apply this preset")
    p.add_argument("--save", metavar="NAME", help="save the current sampling settings as NAME")
    p.add_argument("--delete", metavar="NAME", help="delete your preset NAME")
    return p


def _log() -> Parser:
    p = Parser(prog="%lm log", description="llama.cpp's log lines")
    p.add_argument("-n", type=int, default=50, help="how many (default 50)")
    p.add_argument("--level", choices=["debug", "info", "warn", "error"])
    return p


def _reset() -> Parser:
    p = Parser(prog="%lm reset", description="forget a conversation")
    p.add_argument("--name", default=DEFAULT_CONVERSATION)
    p.add_argument("--all", action="store_true")
    return p


def _history() -> Parser:
    p = Parser(prog="%lm history", description="the last recorded generations")
    p.add_argument("-n", type=int, default=10)
    return p


def _serve() -> Parser:
    p = Parser(prog="%lm serve", description="serve the loaded models over an OpenAI-compatible API (a thread in "
               "this kernel; default http://127.0.0.1:1234/v1); no options: start, or show the running server")
    add_serve_arguments(p)
    p.add_argument("--stop", action="store_true", help="stop the server and free the port")
    p.add_argument("--status", action="store_true", help="show the server's state")
    return p


def _connect() -> Parser:
    p = Parser(prog="%lm connect", description="run %%lm / %%lm chat on another OpenAI-compatible server "
               "(LM Studio, Ollama, llama-server, vLLM, another lmnb)")
    p.add_argument("url", nargs="+", help="an OpenAI-compatible base URL, e.g. http://localhost:1234/v1; "
                   "several: lmnb.map spreads its rows over them, chats use the first that is up")
    p.add_argument("--api-key", dest="api_key")
    p.add_argument("--model")
    return p


def _mcp() -> Parser:
    p = Parser(prog="%lm mcp", description="MCP servers whose tools chats can use (--tools mcp:NAME): with no "
               "arguments, list them and their tools")
    p.add_argument("action", nargs="?", choices=("add", "remove"), help="add NAME COMMAND [ARGS...] | URL; remove NAME")
    p.add_argument("name", nargs="?", help="what to call the server")
    p.add_argument("target", nargs=argparse.REMAINDER, help="the command and its arguments, or an http(s) URL")
    return p


def _lora() -> Parser:
    p = Parser(prog="%lm lora", description="LoRA adapters on the loaded model, without reloading it: with no "
               "arguments, list them with their scales")
    p.add_argument("action", nargs="?", choices=("add", "scale", "remove"),
                   help="add PATH[:SCALE] (a GGUF LoRA, a PEFT folder or a repo id); scale NAME S; remove NAME")
    p.add_argument("target", nargs="?", help="the adapter: a path or repo id to add, or a loaded adapter's name")
    p.add_argument("scale", nargs="?", help="the new scale (for scale)")
    p.add_argument("--name", help="what requests call it (default: the file or folder name)")
    p.add_argument("-m", "--model", metavar="NAME", help="the loaded model (default: the default model)")
    return p


COMMANDS: dict[str, Callable[[], Parser]] = {
    "load": _load,
    "unload": _unload,
    "status": _plain("%lm status", "every loaded model: load options, memory, last tokens/s"),
    "info": _info,
    "models": _plain("%lm models", "local models (bundled, HF cache, models dir, LM Studio, Ollama) with size, "
                     "quantization, last use, disk used"),
    "search": _search,
    "files": _files,
    "download": _download,
    "rm": _rm,
    "set": _set,
    "ui": _ui,
    "preset": _preset,
    "log": _log,
    "reset": _reset,
    "history": _history,
    "serve": _serve,
    "connect": _connect,
    "disconnect": _plain("%lm disconnect", "back to the in-kernel engine"),
    "mcp": _mcp,
    "lora": _lora,
}


def parser(command: str) -> Parser:
    """The parser of ``%lm COMMAND``; ``UsageError`` for an unknown command."""
    make = COMMANDS.get(command)
    if make is None:
        raise UsageError(f"unknown %lm command {command!r}; commands: {', '.join(COMMANDS)}. `%lm?` explains each.")
    return make()


def usage() -> str:
    """``%lm?``: every command with its flags and purpose, and the cell magics' options."""
    out = ["%lm — run local GGUF models (llama.cpp) in this kernel.", "", "Line magic (%lm COMMAND -h for details):"]
    for name in COMMANDS:
        p = parser(name)
        line = " ".join(p.format_usage().replace("usage: ", "").replace("[-h] ", "").split())
        out.append(textwrap.fill(line, 100, initial_indent="  ", subsequent_indent="      "))
        out.append(textwrap.fill(p.description or "", 100, initial_indent="        ", subsequent_indent="        "))
    out += ["", "Cell magic:"]
    for mode, what in CELL_MODES.items():
        head = f"%%lm {mode} [options]" if mode else "%%lm [options]"
        out.append(textwrap.fill(f"{head}: {what}", 100, initial_indent="  ", subsequent_indent="      "))
    help_ = cell_parser("").format_help()
    out += ["", "Options of %%lm (chat adds --name, map adds --over and --parallel):", help_.split("\n\n", 1)[-1]]
    out += ["{name} in the cell is replaced by the variable's value; {{ and }} give literal braces;",
            "other braces (dicts, JSON, code) are left as typed.", "",
            "Defaults live in one config object: %config LM  (e.g. %config LM.n_ctx = 8192)."]
    return "\n".join(out)
