"""Command-line options for sampling, shared by the ``%%lm`` magic and the ``lmnb`` CLI."""

from __future__ import annotations

import argparse
from typing import Any

from .types import SAMPLING_FIELDS


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """``-t/--temperature``, ``--top-p``, ..., ``--stop`` (repeatable): one flag per sampling field."""
    p.add_argument("-t", "--temperature", type=float)
    p.add_argument("--top-p", type=float, dest="top_p")
    p.add_argument("--top-k", type=int, dest="top_k")
    p.add_argument("--min-p", type=float, dest="min_p")
    p.add_argument("--repeat-penalty", type=float, dest="repeat_penalty")
    p.add_argument("--presence-penalty", type=float, dest="presence_penalty")
    p.add_argument("--frequency-penalty", type=float, dest="frequency_penalty")
    p.add_argument("-n", "--max-tokens", type=int, dest="max_tokens")
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", help="stop string (repeatable)")


def sampling_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling parameters given on the command line (unset ones are left to the defaults)."""
    return {k: getattr(args, k) for k in SAMPLING_FIELDS if getattr(args, k, None) is not None}
