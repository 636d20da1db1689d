"""Ranking a library's chunks for a query: BM25 (full text), vectors (cosine), or both fused.

Hybrid ranking is reciprocal rank fusion (Cormack et al., 2009): each chunk scores
``sum(1 / (60 + rank))`` over the two lists. It needs no calibration between BM25 scores and
cosines, which live on unrelated scales, and it is what Open WebUI, Elasticsearch and
GPT4All's LocalDocs use to merge keyword and embedding search.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import numpy as np

    from .store import ChunkRow, Store

MODES = ("auto", "hybrid", "bm25", "vector")  # auto: hybrid with an embedding model, else bm25
RRF_K = 60  # the constant of reciprocal rank fusion (the paper's value; robust across corpora)


@dataclass(frozen=True)
class Hit:
    """A chunk found by a search, and where it comes from.

    ``start``/``end`` count lines (text, Markdown, CSV, HTML source; lines of the page for a
    PDF) or paragraphs (Word), as ``unit`` says; ``page_start``/``page_end`` are PDF pages.
    """

    library: str
    file: str
    kind: str
    unit: str
    text: str
    start: int
    end: int
    page_start: Optional[int]
    page_end: Optional[int]
    score: float
    rank: int
    chunk_id: int

    @property
    def where(self) -> str:
        """Where the chunk is, for people: ``report.pdf p. 3, lines 4–9``."""
        return where(self.file, self.unit, self.start, self.end, self.page_start, self.page_end)

    def to_dict(self) -> dict:
        return {**asdict(self), "where": self.where}

    def __str__(self) -> str:
        return f"{self.rank}. {self.where} ({self.score:.3g})\n   {' '.join(self.text.split())[:200]}"


def where(file: str, unit: str, start: int, end: int, page_start: Optional[int] = None,
          page_end: Optional[int] = None) -> str:  # fmt: skip
    """``notes.md lines 3–9``, ``paper.pdf p. 2–3``, ``memo.docx ¶ 4``: a location in words."""
    name = os.path.basename(file)
    if page_start is not None:
        if page_end is not None and page_end != page_start:
            return f"{name} p. {page_start}–{page_end}"
        return f"{name} p. {page_start}, {_span('line', start, end)}"
    return f"{name} {_span(unit, start, end)}"


def _span(unit: str, start: int, end: int) -> str:
    if unit == "paragraph":
        return f"¶ {start}" if start == end else f"¶ {start}–{end}"
    return f"line {start}" if start == end else f"lines {start}–{end}"


def rank(store: "Store", query: str, k: int, mode: str = "hybrid",
         query_vector: Optional["np.ndarray"] = None) -> list[tuple[int, float]]:  # fmt: skip
    """The ``k`` best chunk ids for ``query`` and their scores (higher is better).

    Args:
        store: the library.
        query: what to look for.
        k: how many chunks.
        mode: ``"bm25"`` full text, ``"vector"`` cosine similarity, ``"hybrid"`` both, fused.
        query_vector: the query's unit-length embedding (needed unless ``mode="bm25"``).
    """
    if mode not in MODES[1:]:
        raise ValueError(f"mode={mode!r}: must be one of {', '.join(MODES)}")
    if mode == "bm25":
        return store.bm25(query, k)
    depth = max(50, 4 * k)  # how deep each list goes before fusing
    dense = _by_vector(store, query_vector, k if mode == "vector" else depth)
    if mode == "vector":
        return dense
    fused: dict[int, float] = {}
    for ranked in (store.bm25(query, depth), dense):
        for r, (cid, _) in enumerate(ranked, start=1):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + r)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def _by_vector(store: "Store", q: Optional["np.ndarray"], k: int) -> list[tuple[int, float]]:
    import numpy as np

    if q is None:
        raise ValueError("a vector search needs the query's embedding")
    ids, mat = store.vectors()
    if not len(ids):
        return []
    scores = mat @ np.asarray(q, dtype=np.float32)
    k = min(k, len(ids))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((ids[top], -scores[top]))]
    return [(int(ids[i]), float(scores[i])) for i in top]


def hits(library: str, store: "Store", ranked: list[tuple[int, float]]) -> list[Hit]:
    """The ranked chunk ids as ``Hit`` objects."""
    rows: dict[int, ChunkRow] = store.chunks([cid for cid, _ in ranked])
    out = []
    for r, (cid, score) in enumerate(ranked, start=1):
        c = rows.get(cid)
        if c is not None:
            out.append(Hit(library, c.path, c.kind, c.unit, c.text, c.start, c.end, c.page_start, c.page_end,
                           score, r, cid))  # fmt: skip
    return out
