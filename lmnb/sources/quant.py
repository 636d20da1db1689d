"""Quantization labels and split shards, read from GGUF file names.

Repositories name their files ``Model-Q4_K_M.gguf``, ``model.q8_0.gguf``, ``Q4_K_M/Model-Q4_K_M-00001-of-00003.gguf``,
``Model-UD-Q4_K_XL.gguf``. The label is what users choose between; shards of one split model are
one choice.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Optional

DEFAULT_QUANT = "Q4_K_M"
# When a repository has no Q4_K_M: the usual "good default" sizes first, then bigger, then smaller.
PREFERENCE = (
    "Q4_K_M", "UD-Q4_K_XL", "Q4_K_S", "IQ4_XS", "Q4_0", "Q4_1", "IQ4_NL", "Q5_K_M", "Q5_K_S", "Q5_0",
    "Q6_K", "Q8_0", "Q3_K_L", "Q3_K_M", "IQ3_M", "Q3_K_S", "BF16", "F16", "Q2_K", "F32",
)  # fmt: skip

_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])("
    r"(?:UD-)?(?:IQ\d_(?:XXS|XS|S|M|NL)|TQ\d_\d|Q\d_K(?:_(?:XXS|XS|S|M|L|XL))?|Q\d_\d(?:_\d_\d)?)"
    r"|MXFP4(?:_MOE)?|BF16|FP16|F16|FP32|F32"
    r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def quant_of(filename: str) -> Optional[str]:
    """The quantization label in a file name (``"Q4_K_M"``), or ``None``. Folders are ignored."""
    name = os.path.basename(filename)
    hits = _QUANT_RE.findall(name)
    if not hits:
        # Some repositories keep shards in a folder named for the quantization.
        hits = _QUANT_RE.findall(os.path.dirname(filename).split("/")[-1]) if "/" in filename else []
        if not hits:
            return None
    label = hits[-1].upper()  # "Llama-3-8B-F16-Q4_K_M.gguf": the last one is the file's own
    return {"FP16": "F16", "FP32": "F32"}.get(label, label)


def split_info(filename: str) -> Optional[tuple[str, int, int]]:
    """``(prefix, shard number, shard count)`` for ``name-00001-of-00003.gguf``, else ``None``."""
    m = _SPLIT_RE.match(filename)
    if not m:
        return None
    return m.group("prefix"), int(m.group("no")), int(m.group("count"))


def is_projector(filename: str) -> bool:
    """Vision projector files (``mmproj-*.gguf``) ride along with a model; they are not one."""
    return "mmproj" in os.path.basename(filename).lower()


def group_shards(paths: Iterable[str]) -> list[list[str]]:
    """Group GGUF paths into models: each split model's shards together (in order), others alone."""
    groups: dict[str, list[tuple[int, str]]] = {}
    order: list[str] = []
    for p in paths:
        info = split_info(p)
        key = info[0] if info else p
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((info[1] if info else 0, p))
    return [[p for _, p in sorted(groups[k])] for k in order]


def matches(label: Optional[str], wanted: str) -> bool:
    """Whether a file's label answers a user's ``:QUANT`` (case-insensitive; ``Q4_K_XL`` finds ``UD-Q4_K_XL``)."""
    if not label:
        return False
    a, b = label.upper(), wanted.upper()
    return a == b or a.removeprefix("UD-") == b.removeprefix("UD-")


def choose(labels: Iterable[Optional[str]]) -> Optional[str]:
    """The label picked when the user names none: Q4_K_M when present, else the first in ``PREFERENCE``."""
    present = [lbl for lbl in labels if lbl]
    for want in PREFERENCE:
        for lbl in present:
            if lbl.upper() == want:
                return lbl
    return present[0] if present else None
