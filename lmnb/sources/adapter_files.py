"""Where a LoRA adapter's GGUF file comes from: a file, a PEFT folder (converted), or a Hub repo."""

from __future__ import annotations

import os
from typing import Optional


def split_scale(item: str) -> tuple[str, Optional[float]]:
    """``"PATH:0.5"`` as ``("PATH", 0.5)``; ``"PATH"`` as ``("PATH", None)`` (a colon in a path stays)."""
    head, sep, tail = item.rpartition(":")
    if not sep or not head or os.path.exists(os.path.expanduser(item)):
        return item, None
    try:
        return head, float(tail)
    except ValueError:
        if os.path.exists(os.path.expanduser(head)):
            raise ValueError(f"LoRA scale {tail!r} in {item!r}: expected a number, as in PATH:0.5") from None
        return item, None


def gguf_for(adapter: str, base_gguf: str) -> tuple[str, str]:
    """(the GGUF file llama.cpp loads, what the user named) for a file, a PEFT folder (converted
    for the model at ``base_gguf``, then cached) or a Hugging Face repo id of either.

    Raises:
        LoadError: nothing at ``adapter``. AdapterError: a PEFT folder that cannot be converted.
        HubError: a repo that cannot be downloaded.
    """
    from ..errors import LoadError

    path, source = os.path.expanduser(adapter), None
    if not os.path.exists(path):
        if _looks_like_repo(adapter):
            path, source = _download(adapter), adapter  # named after the repo, not its cache folder
        else:
            raise LoadError(f"no LoRA adapter at {adapter!r}: not a file, a folder, or a loaded adapter's name")
    if os.path.isdir(path):
        from .peft import convert_peft, is_peft_folder

        ggufs = sorted(f for f in os.listdir(path) if f.lower().endswith(".gguf"))
        if is_peft_folder(path):
            return convert_peft(path, base_gguf), source or os.path.abspath(path)
        if len(ggufs) == 1:
            return os.path.join(path, ggufs[0]), source or os.path.abspath(path)
        raise ValueError(f"{adapter}: neither a PEFT adapter folder (no adapter_config.json) nor a folder "
                         f"with one GGUF LoRA file ({len(ggufs)} .gguf files)")  # fmt: skip
    return path, os.path.abspath(path)


def _looks_like_repo(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _download(repo: str) -> str:
    """A Hugging Face adapter repo's files (the PEFT config and weights, or GGUF files), via the hub cache."""
    from ..hub import download_adapter

    return download_adapter(repo)
