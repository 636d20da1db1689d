"""``lmnb.lora``: LoRA adapters on a loaded model, added, rescaled and removed without reloading it.

    lmnb.lora("runs/reports-lora")            # a PEFT folder (converted to GGUF once, then cached)
    lmnb.lora("reports.gguf", scale=0.5)      # a GGUF LoRA, at half strength
    lmnb.lora("reports", scale=0)             # rescale (0: loaded but off)
    lmnb.lora("reports", remove=True)
    lmnb.lora()                               # what is loaded: [{id, name, path, scale, alpha}]
    lmnb.chat("...", lora="reports:0.5")      # one request's own choice; lora=[] is the base alone
"""

from __future__ import annotations

import os
from typing import Any, Optional


def lora(
    adapter: Optional[str] = None,
    scale: Optional[float] = None,
    *,
    name: Optional[str] = None,
    remove: bool = False,
    model: Optional[str] = None,
) -> list[dict]:
    """Add, rescale or remove a LoRA adapter on a loaded model; with no arguments, list them.

    Args:
        adapter: a GGUF LoRA file, a PEFT folder (``adapter_config.json`` + ``adapter_model.safetensors``,
            as peft, Axolotl and Unsloth write it), a Hugging Face repo id of either, or the name
            (or path) of an adapter already loaded.
        scale: how strongly it applies to requests that do not choose their adapters (1.0 as
            trained, 0 off, negative subtracts it). For a new adapter the default is 1.0.
        name: the name requests use (``lora="name"``); default: the file or folder name.
        remove: free the adapter instead.
        model: which loaded model (its name); ``None``: the default model.

    Returns:
        The adapters now on the model: ``{"id", "name", "path", "scale", "alpha"}`` each, ``id``
        being its position (llama-server's ``/lora-adapters`` ids).

    Raises:
        NoModelLoaded: no model is loaded.
        AdapterError: a PEFT folder that cannot be converted (another model's shapes, a module
            the converter does not know, a corrupt file); the base stays loaded and working.
        LoadError: no such file, folder or adapter, or llama.cpp refused the GGUF file.
        ValueError: a scale that is not a number, or an unknown adapter name.
    """
    from .api import get_engine

    engine = get_engine(model)
    if adapter is not None:
        known = _loaded(engine, adapter)
        if remove:
            engine.remove_lora(known.name if known else adapter)
        elif known is not None and name in (None, known.name):
            if scale is None:
                raise ValueError(f"the adapter {known.name!r} is loaded already; give scale= to change its strength, "
                                 "or remove=True")  # fmt: skip
            engine.scale_lora(known.name, scale)
        else:
            add(engine, adapter, scale, name)
    elif remove or scale is not None:
        raise ValueError("name the adapter to rescale or remove (lmnb.lora() lists them)")
    return [dict(id=i, **a.as_dict()) for i, a in enumerate(engine.loras())]


def _loaded(engine: Any, adapter: str) -> Any:
    full = os.path.abspath(os.path.expanduser(adapter))
    return next((a for a in engine.loras() if adapter == a.name or full in (a.path, a.source)), None)


def add(engine: Any, adapter: str, scale: Optional[float] = None, name: Optional[str] = None) -> None:
    """Add ``adapter`` (a GGUF LoRA, a PEFT folder, a repo id) to ``engine``'s model."""
    from .errors import NoModelLoaded
    from .sources.adapter_files import gguf_for

    if engine.info is None:
        raise NoModelLoaded()
    path, source = gguf_for(adapter, engine.info.path)
    engine.add_lora(path, 1.0 if scale is None else scale, name=name, source=source)
