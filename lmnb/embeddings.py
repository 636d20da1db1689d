"""Embeddings from the Python API: ``lmnb.embed``, and a separate embedding model beside the chat model."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Union

from .api import get_engine
from .config import get_config
from .errors import NoModelLoaded
from .types import LoadOptions, ModelInfo

if TYPE_CHECKING:
    from .engine import Engine


def embed(texts: Union[str, list[str]], *, model: Optional[str] = None):
    """Unit-length embedding vectors of ``texts``: a numpy float32 array, one row per text (a
    single vector for a single string).

    Args:
        texts: a string or a list of strings (batched, up to 16 per llama.cpp call).
        model: an embedding model to use (a name or path, as for ``load``): loaded once beside
            the chat model and kept, as ``load_embedder``. ``None``: the embedding model already
            loaded, else ``LM.embedding_model`` when set, else the loaded chat model (the mean
            of its hidden states).
    """
    single = isinstance(texts, str)
    engine, source, _ = embedding_source(model)
    vectors, _ = engine.embed([texts] if single else list(texts), source)
    return vectors[0] if single else vectors


def embedding_source(model: Optional[str] = None) -> tuple["Engine", str, ModelInfo]:
    """Which model embeds, as ``embed(model=)`` chooses it: the engine, its ``source`` for
    ``Engine.embed`` (``"chat"``, ``"embedder"`` or ``"auto"``) and the model's info.

    Raises:
        NoModelLoaded: no model is loaded and none is named.
    """
    engine = get_engine()
    wanted = model or (engine.embedder_info is None and get_config().embedding_model) or None
    source = "auto"
    if wanted:
        from .sources.library import resolve

        path = os.path.abspath(resolve(wanted, download=True))
        if engine.info is not None and engine.info.path == path:
            source = "chat"  # the chat model itself: no second copy of its weights
        else:
            if engine.embedder_info is None or engine.embedder_info.path != path:
                load_embedder(path)
            source = "embedder"
    elif not engine.loaded and engine.embedder_info is None:
        raise NoModelLoaded()
    info = engine.info if source == "chat" or engine.embedder_info is None else engine.embedder_info
    return engine, source, info


def load_embedder(model: str, *, n_gpu_layers: Optional[Union[int, str]] = None,
                  n_threads: Optional[int] = None) -> ModelInfo:  # fmt: skip
    """Load ``model`` (a name or path, as for ``load``) for embeddings only, beside the chat model.

    From then on ``lmnb.embed`` and the server's ``/v1/embeddings`` use it; the chat model is not
    touched. A dedicated embedding GGUF (nomic-embed, bge, e5, ...) pools as its header says.
    """
    from .sources.library import resolve

    path = resolve(model, download=True)
    return get_engine().load_embedder(path, LoadOptions(n_gpu_layers=n_gpu_layers, n_threads=n_threads))


def unload_embedder() -> bool:
    """Free the embedding model (``embed`` goes back to the chat model). Returns whether one was loaded."""
    return get_engine().unload_embedder()
