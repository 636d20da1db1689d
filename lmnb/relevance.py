"""Documents ranked by relevance to a query: the one scoring of ``lmnb.rerank`` and the server's
``/v1/rerank``.

It takes the engine as an argument and imports nothing above it, so that the server can use it
without the notebook's API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(frozen=True)
class Ranked:
    """One document of ``lmnb.rerank``'s answer: its position in the list given, its score and its text."""

    index: int
    score: float  # cosine similarity with the query, in [-1, 1]; comparable within one model only
    text: str


class RerankInputError(ValueError):
    """A query or documents that cannot be scored; ``field`` names the culprit (``"query"``,
    ``"documents"``, ``"documents.3"``, ``"top_n"``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def rank(engine: "Engine", query: str, documents: list[str], *, source: str = "auto",
         top_n: Optional[int] = None) -> tuple[list[tuple[int, float]], int]:  # fmt: skip
    """Score ``documents`` against ``query`` by the cosine similarity of their embeddings.

    The query and the documents are embedded in one engine call, queued like a generation.

    Args:
        engine: the engine whose embedding model (or chat model) embeds.
        query: the text to rank the documents by.
        documents: the texts to rank.
        source: ``Engine.embed``'s source: ``"auto"``, ``"chat"`` or ``"embedder"``.
        top_n: keep only the best ``top_n`` (``None``: all).

    Returns:
        ``(index, score)`` pairs, best first (equal scores keep the documents' order), and the
        number of tokens read.

    Raises:
        RerankInputError: an empty query, no documents, an empty or too long text, ``top_n < 1``.
        NoModelLoaded: nothing to embed with.
    """
    if not isinstance(query, str) or not query.strip():
        raise RerankInputError("the query is empty", "query")
    if not documents:
        raise RerankInputError("there are no documents to rank", "documents")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise RerankInputError(f"top_n must be a whole number >= 1 (got {top_n!r})", "top_n")
    for i, d in enumerate(documents):
        if not isinstance(d, str):
            raise RerankInputError(f"documents[{i}] is a {type(d).__name__}, not a string", f"documents.{i}")
        if not d.strip():  # nothing to compare; /v1/embeddings refuses an empty input too
            raise RerankInputError(f"documents[{i}] is empty", f"documents.{i}")
    try:
        vectors, n_tokens = engine.embed([query, *documents], source)
    except ValueError as e:  # the engine names its inputs input[i]; the query is input[0]
        m = re.match(r"input\[(\d+)\](.*)", str(e), re.S)
        if not m:
            raise
        i = int(m.group(1)) - 1
        name, field = ("the query", "query") if i < 0 else (f"documents[{i}]", f"documents.{i}")
        raise RerankInputError(name + m.group(2), field) from None
    scores = vectors[1:] @ vectors[0]  # unit vectors: the dot product is the cosine
    order = sorted(range(len(documents)), key=lambda i: -float(scores[i]))  # stable: ties keep their order
    return [(i, float(scores[i])) for i in order[:top_n]], n_tokens
