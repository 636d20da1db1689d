"""Embeddings from the Python API: ``lmnb.embed``, ``lmnb.rerank`` (scored by ``relevance.rank``, as the
server's ``/v1/rerank``), and a separate embedding model beside the chat model."""

from __future__ import annotations

from typing import Optional, Union

from .api import get_engine
from .embedding_source import embedding_source
from .relevance import Ranked, rank
from .types import LoadOptions, ModelInfo


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
    engine = get_engine()
    source, _ = embedding_source(engine, model)
    vectors, _ = engine.embed([texts] if single else list(texts), source)
    return vectors[0] if single else vectors



def rerank(query: str, documents: list[str], *, top_n: Optional[int] = None,
           model: Optional[str] = None) -> list[Ranked]:  # fmt: skip
    """Rank ``documents`` by relevance to ``query``: the cosine similarity of their embeddings.

    The same scores as the server's ``/v1/rerank``. A dedicated embedding model
    (``load_embedder``) ranks far better than the chat model's mean-pooled hidden states, which
    are used when none is loaded.

    Args:
        query: what to rank by.
        documents: the texts to rank (each within the embedding model's limit, 2048 tokens at most).
        top_n: keep only the best ``top_n`` (``None``: all).
        model: the embedding model, chosen as for ``embed``.

    Returns:
        ``Ranked(index, score, text)`` for each document kept, best first.

    Raises:
        RerankInputError: (a ``ValueError``) an empty query, no documents, an empty or too long
            document, ``top_n < 1``; its ``field`` names the culprit.
        NoModelLoaded: no model to embed with.
    """
    documents = list(documents)
    engine = get_engine()
    source, _ = embedding_source(engine, model)
    pairs, _ = rank(engine, query, documents, source=source, top_n=top_n)
    return [Ranked(i, score, documents[i]) for i, score in pairs]


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
