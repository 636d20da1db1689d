"""lmnb: LM Studio, inside Jupyter.

    %load_ext lmnb
    %lm load                 # the bundled SmolLM2-135M-Instruct
    %%lm chat
    Explain attention in two sentences.

or from Python::

    import lmnb
    lmnb.load()
    print(lmnb.chat("Explain attention in two sentences.").text)

Heavy modules (llama.cpp, huggingface_hub, pandas) are imported on first use, so that
``import lmnb`` and ``%load_ext lmnb`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__ as __version__

# public name -> module that defines it
_EXPORTS = {
    "load": "api",
    "unload": "api",
    "loaded": "api",
    "info": "api",
    "status": "api",
    "models": "api",
    "chat": "api",
    "complete": "api",
    "conversation": "api",
    "reset": "api",
    "history": "api",
    "logs": "api",
    "get_engine": "api",
    "model_sha256": "api",
    "connect": "api",
    "disconnect": "api",
    "embed": "api",
    "tokens": "token_view",
    "token_probs": "token_view",
    "explore": "widgets.explorer",
    "compare": "comparison",
    "load_embedder": "api",
    "unload_embedder": "api",
    "search": "api",
    "download": "api",
    "rm": "api",
    "studio": "widgets.studio",
    "map": "batch",
    "ItemError": "batch",
    "serve": "server",
    "Server": "server",
    "Conversation": "conversations",
    "configure": "config",
    "get_config": "config",
    "LM": "config",
    "LmnbError": "errors",
    "LoadError": "errors",
    "HubError": "errors",
    "StructuredOutputError": "errors",
    "DownloadCancelled": "errors",
    "NoModelLoaded": "errors",
    "ContextOverflow": "errors",
    "GenerationError": "errors",
    "Completion": "types",
    "ModelInfo": "types",
    "SamplingParams": "types",
    "LoadOptions": "types",
    "Status": "types",
    "Usage": "types",
    "Timings": "types",
}

__all__ = sorted(_EXPORTS) + ["hub", "widgets", "load_ipython_extension", "unload_ipython_extension"]


_SUBPACKAGES = ("hub", "widgets")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # `lmnb.hub.search(...)` without importing lmnb.hub first
        return importlib.import_module(f"lmnb.{name}")
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'lmnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lmnb.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lmnb``: register the ``%lm`` / ``%%lm`` magics and the ``LM`` config."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
