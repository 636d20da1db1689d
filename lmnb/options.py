"""Command-line flags for sampling and load parameters, built from ``lmnb.params``: the ``%%lm``
and ``%lm load`` magics and the ``lmnb`` CLI share them, and their help is the table's."""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from .params import LOAD, SAMPLING, Param


def _number(p: Param):
    kind = p.type

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, not {text!r}"
            ) from None
        try:
            return p.check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _logit_bias(text: str) -> dict[int, float]:
    """``--logit-bias 42=-100`` (repeatable) or a JSON object ``'{"42": -100}'``."""
    from .params import check_logit_bias

    try:
        if text.lstrip().startswith("{"):
            raw = json.loads(text)
        else:
            token, _, bias = text.partition("=")
            raw = {token.strip(): float(bias)}
        return check_logit_bias(raw)
    except (ValueError, TypeError) as e:
        raise argparse.ArgumentTypeError(f"{e} (write TOKEN_ID=BIAS, e.g. 42=-100)") from None


class _MergeDict(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Optional[str] = None) -> None:
        merged = dict(getattr(namespace, self.dest) or {})
        merged.update(values)
        setattr(namespace, self.dest, merged)


def add_param_argument(parser: argparse.ArgumentParser, p: Param) -> None:
    """The flag(s) of one declared parameter (unset: ``None``, so the session default applies)."""
    help_ = p.help.replace("%", "%%")
    if p.type is list:
        parser.add_argument(*p.cli_flags, dest=p.name, action="append", metavar="TEXT", help=help_)
    elif p.type is dict:
        parser.add_argument(*p.cli_flags, dest=p.name, type=_logit_bias, action=_MergeDict, metavar="TOKEN=BIAS",
                            help=help_ + " Repeatable.")  # fmt: skip
    elif p.type is bool:
        parser.add_argument(*p.cli_flags, dest=p.name, action=argparse.BooleanOptionalAction, default=None,
                            help=help_)  # fmt: skip
    elif p.choices:
        parser.add_argument(*p.cli_flags, dest=p.name, choices=p.choices, help=help_)
    elif p.type is str:
        parser.add_argument(*p.cli_flags, dest=p.name, metavar=p.name.upper(), help=help_)
    else:
        parser.add_argument(*p.cli_flags, dest=p.name, type=_number(p), metavar=p.type.__name__.upper(),
                            help=help_)  # fmt: skip


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per sampling parameter (``-t/--temperature``, ``--top-p``, ..., ``--stop`` repeatable)."""
    group = parser.add_argument_group("sampling")
    for p in SAMPLING:
        add_param_argument(group, p)  # type: ignore[arg-type]


def add_load_arguments(parser: argparse.ArgumentParser, names: Optional[tuple[str, ...]] = None) -> None:
    """One flag per load parameter (``--ctx``, ``--gpu-layers``, ...); ``names`` picks a subset."""
    group = parser.add_argument_group("loading")
    for p in LOAD:
        if names is None or p.name in names:
            add_param_argument(group, p)  # type: ignore[arg-type]


def sampling_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling parameters given on the command line (unset ones are left to the defaults)."""
    return {p.name: getattr(args, p.name) for p in SAMPLING if getattr(args, p.name, None) is not None}


def load_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The load parameters given on the command line (keyword arguments of ``lmnb.load``)."""
    return {p.name: getattr(args, p.name) for p in LOAD if getattr(args, p.name, None) is not None}


# --- flags shared by the magics and the CLI (hub and server) ----------------------------------------
def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", nargs="*", help="words to look for (none: the most downloaded)")
    p.add_argument("--limit", type=int, default=20, help="how many repositories (default 20)")
    p.add_argument("--sort", default="downloads", choices=["downloads", "likes", "modified", "created", "trending"],
                   help="order (default downloads)")  # fmt: skip


def add_files_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", help="owner/repo on Hugging Face")
    p.add_argument("--ctx", type=int, dest="n_ctx", help="context length for the memory estimate")
    p.add_argument("--revision", help="a branch, tag or commit")


def add_download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="owner/repo (Q4_K_M by default), owner/repo:QUANT or owner/repo/file.gguf")
    p.add_argument("--quant", help="the quantization, e.g. Q8_0")
    p.add_argument("--revision", help="a branch, tag or commit")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 1234; 0 = any free port)")
    p.add_argument("--api-key", dest="api_key", help="require 'Authorization: Bearer KEY'")
    p.add_argument("--cors", action="append", metavar="ORIGIN", help="allow browser calls from ORIGIN (repeatable)")
    p.add_argument("--allow-host", dest="allowed_hosts", action="append", metavar="NAME",
                   help="also answer requests addressed to NAME (Host header), besides localhost (repeatable)")
