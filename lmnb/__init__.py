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
from typing import TYPE_CHECKING, Any

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
    "logs": "engine.logs",
    "get_engine": "api",
    "model_sha256": "api",
    "connect": "api",
    "disconnect": "api",
    "embed": "embeddings",
    "rerank": "embeddings",
    "tokens": "teaching.token_view",
    "token_probs": "teaching.token_view",
    "explore": "widgets.explorer",
    "compare": "teaching.comparison",
    "load_embedder": "embeddings",
    "unload_embedder": "embeddings",
    "search": "api",
    "download": "api",
    "rm": "api",
    "studio": "widgets.studio",
    "map": "batch",
    "lora": "adapters",
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

if TYPE_CHECKING:  # the same names, statically, for type checkers and IDEs (tests/test_layout.py keeps them equal)
    from .adapters import lora as lora
    from .api import (
        chat as chat,
        complete as complete,
        connect as connect,
        conversation as conversation,
        disconnect as disconnect,
        download as download,
        get_engine as get_engine,
        history as history,
        info as info,
        load as load,
        loaded as loaded,
        model_sha256 as model_sha256,
        models as models,
        reset as reset,
        rm as rm,
        search as search,
        status as status,
        unload as unload,
    )
    from .batch import ItemError as ItemError, map as map
    from .config import LM as LM, configure as configure, get_config as get_config
    from .conversations import Conversation as Conversation
    from .embeddings import (
        embed as embed,
        load_embedder as load_embedder,
        rerank as rerank,
        unload_embedder as unload_embedder,
    )
    from .engine.logs import logs as logs
    from .errors import (
        ContextOverflow as ContextOverflow,
        DownloadCancelled as DownloadCancelled,
        GenerationError as GenerationError,
        HubError as HubError,
        LmnbError as LmnbError,
        LoadError as LoadError,
        NoModelLoaded as NoModelLoaded,
        StructuredOutputError as StructuredOutputError,
    )
    from .server import Server as Server, serve as serve
    from .teaching.comparison import compare as compare
    from .teaching.token_view import token_probs as token_probs, tokens as tokens
    from .types import (
        Completion as Completion,
        LoadOptions as LoadOptions,
        ModelInfo as ModelInfo,
        SamplingParams as SamplingParams,
        Status as Status,
        Timings as Timings,
        Usage as Usage,
    )
    from .widgets.explorer import explore as explore
    from .widgets.studio import studio as studio

__all__ = sorted(_EXPORTS) + ["hub", "widgets", "docs", "load_ipython_extension", "unload_ipython_extension"]


_SUBPACKAGES = ("hub", "widgets", "docs")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # `lmnb.hub.search(...)`, `lmnb.docs.add(...)` without importing them first
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
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)
