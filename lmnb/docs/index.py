"""Indexing: files and folders into a library (read, chunk, embed, store), again and again.

A file whose content hash is unchanged is not read again; a changed one is re-indexed alone; a
file gone from a folder that is indexed again is dropped. Each file is committed on its own, so an
interrupted run (Ctrl-C, a kernel interrupt) keeps every file it finished, and the next run goes
on from there. Files that cannot be read are recorded with the reason, never stopping the run.

The bar counts bytes, moved by each file's share as its chunks are embedded, so a single big file
(a 100-page PDF takes minutes to embed) moves it too; files, chunks and tokens/s are in its text.
A ``stop`` event (the Documents pane's Stop) ends the run between two embedding calls. A file is
stored only whole, but the vectors of one cut short are kept aside and not computed again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .readers import Unreadable, read, read_bytes

if TYPE_CHECKING:
    import numpy as np

    from ..engine import Engine
    from .store import Store

# chunks per embedding call (a few seconds of work): the bar moves and Stop answers that often,
# and each call still fills llama.cpp's batch (2,048 tokens, engine/embedding.py)
EMBED_BATCH = 8


class _Stopped(Exception):
    """The ``stop`` event was set: end the run, keeping the files finished."""


@dataclass
class IndexReport:
    """What an indexing run did."""

    library: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0  # chunks written by this run
    tokens: int = 0
    # chunks embedded by this run: new ones (less those an interrupted run had done), and all of
    # them when the embedding model changed
    embedded: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated", f"{self.unchanged} unchanged"]
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        head = "interrupted: kept " if self.interrupted else ""
        return (f"{self.library}: {head}{', '.join(parts)} files; {self.chunks} chunks "
                f"({self.tokens:,} tokens) in {self.seconds:.1f} s")  # fmt: skip

    def __repr__(self) -> str:
        lines = [self.summary()] + [f"  skipped {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)


class Embedder:
    """The model that embeds a library's chunks and its queries, with its identity."""

    def __init__(self, engine: "Engine", model: Optional[str] = None) -> None:
        from ..embedding_source import embedding_source

        self.engine = engine
        self.source, info = embedding_source(engine, model)
        self.name = info.name
        # a model made for embeddings says how it pools in its header; a chat model's mean-pooled
        # states rank far worse than BM25 (bench/retrieval_bench.py), so ``mode="auto"`` skips them
        self.dedicated = f"{info.architecture}.pooling_type" in (info.metadata or {})
        self.identity = {"name": info.name, "file": os.path.basename(info.path), "size": info.file_size}

    def embed(self, texts: Sequence[str]) -> "np.ndarray":
        return self.engine.embed(list(texts), self.source)[0]

    def counter(self, texts: Sequence[str]) -> Callable[[str], int]:
        """A token counter for this model, with ``texts`` counted in one call up front."""
        known = dict(zip(texts, self.engine.count_tokens(list(texts), self.source))) if texts else {}

        def count(text: str) -> int:
            n = known.get(text)
            if n is None:
                n = known[text] = self.engine.count_tokens([text], self.source)[0]
            return n

        return count


def index(name: str, store: "Store", roots: Sequence[str], embedder: Embedder, *, size: int, overlap: int,
          max_bytes: int, progress: Any = True, stop: Optional[threading.Event] = None) -> IndexReport:  # fmt: skip
    """Index ``roots`` (files and folders) into ``store``; see ``lmnb.docs.add``."""
    from .walk import walk

    report = IndexReport(name)
    t0 = time.perf_counter()
    bar = _bar(progress, name)
    try:
        if store.set_model(embedder.identity):
            report.embedded += embed_missing(store, embedder, name, bar, stop=stop)
        found = list(walk(roots, max_bytes=max_bytes))
        meter = _Meter(bar, found, report, t0)
        seen = set()
        for cand in found:
            _check(stop)
            seen.add(cand.path)
            if cand.skip:
                store.skip(cand.path, cand.skip)
                report.skipped.append((cand.path, cand.skip))
            else:
                _index_file(store, cand, embedder, report, size=size, overlap=overlap, meter=meter, stop=stop)
            meter.file_done(cand)
        # only a walk that went to the end knows which files are gone
        store.clear_pending()  # every file is stored: nothing is left to go on with
        gone = [f.path for f in store.files() if f.path not in seen and _under(f.path, roots)]
        gone += [p for p, _ in store.skipped() if p not in seen and _under(p, roots)]
        if gone:
            store.remove_files(gone)
            report.removed = sorted(set(gone))
    except _Stopped:
        report.interrupted = True
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        report.seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        if report.interrupted and progress is True:  # our own bar, in the cell that ran it
            print(f"{report.summary()}. Run lmnb.docs.add({name!r}) again to go on.")
    return report


class _Meter:
    """Drives the bar in bytes: each file's share as its chunks are embedded, all of it when done."""

    def __init__(self, bar: Any, found: Sequence[Any], report: IndexReport, t0: float) -> None:
        self.bar, self.report, self.t0 = bar, report, t0
        self.files, self.finished = len(found), 0
        self.base = self.shown = 0  # bytes of the files finished; bytes the bar shows
        # tokens this run embedded (not those an interrupted run had kept aside): the bar's tok/s
        self.tokens, self.file_tokens = 0, 0
        if bar is not None:
            bar.reset(total=sum(c.size for c in found if not c.skip))

    def within(self, cand: Any, done: int, n: int, tokens: int) -> None:
        """``done`` of the ``n`` chunks of ``cand`` have vectors; this run embedded ``tokens`` tokens of it."""
        self.file_tokens = tokens
        where = f"{os.path.basename(cand.path)}: chunk {done}/{n}"
        self._show(self.base + cand.size * done // max(n, 1), where)

    def file_done(self, cand: Any) -> None:
        self.finished += 1
        self.tokens, self.file_tokens = self.tokens + self.file_tokens, 0
        if not cand.skip:
            self.base += cand.size
        self._show(self.base)

    def _show(self, n: int, where: str = "") -> None:
        if self.bar is None:
            return
        rate = (self.tokens + self.file_tokens) / max(time.perf_counter() - self.t0, 1e-9)
        parts = [f"{self.finished}/{self.files} files"] + ([where] if where else [])
        parts.append(f"{self.report.chunks} chunks, {rate:,.0f} tok/s")
        self.bar.set_postfix_str(" · ".join(parts), refresh=False)
        self.bar.update(n - self.shown)
        self.shown = n


def _check(stop: Optional[threading.Event]) -> None:
    if stop is not None and stop.is_set():
        raise _Stopped


def _index_file(store: "Store", cand: Any, embedder: Embedder, report: IndexReport, *, size: int,
                overlap: int, meter: _Meter, stop: Optional[threading.Event]) -> None:  # fmt: skip
    from .chunking import chunk

    path = cand.path
    try:
        data = read_bytes(path)  # read once: hashed, then parsed (no change can slip in between)
        digest = hashlib.sha256(data).hexdigest()
        old = store.file(path)
        if old is not None and old.sha256 == digest:
            if old.mtime != cand.mtime:
                store.touch_file(path, cand.mtime)
            report.unchanged += 1
            return
        doc = read(path, data)
        count = embedder.counter([p.text for p in doc.passages])
        chunks = chunk(doc, count, size=size, overlap=overlap)
        tick = lambda done, tokens: meter.within(cand, done, len(chunks), tokens)  # noqa: E731
        vectors, computed = _embed(store, embedder, chunks, tick, stop) if chunks else (None, 0)
    except Unreadable as e:
        store.skip(path, e.reason)
        report.skipped.append((path, e.reason))
        return
    store.put_file(path, kind=doc.kind, unit=doc.unit, sha256=digest, size=cand.size, mtime=cand.mtime,
                   chunks=chunks, vectors=vectors)  # fmt: skip
    (report.updated if old is not None else report.added).append(path)
    report.chunks += len(chunks)
    report.tokens += sum(c.n_tokens for c in chunks)
    report.embedded += computed


def _embed(store: "Store", embedder: Embedder, chunks: Sequence[Any], tick: Callable[[int, int], None],
           stop: Optional[threading.Event]) -> tuple["np.ndarray", int]:  # fmt: skip
    """The chunks' vectors, each batch kept aside as it is done (an interrupted file goes on), and
    how many were computed (not kept aside by an earlier run)."""
    import numpy as np

    texts = [c.text for c in chunks]
    known = store.pending(texts)
    todo = [i for i, t in enumerate(texts) if t not in known]
    done, tokens = len(texts) - len(todo), 0
    for j in range(0, len(todo), EMBED_BATCH):
        _check(stop)
        batch = todo[j : j + EMBED_BATCH]
        part = [texts[i] for i in batch]
        vecs = embedder.embed(part)
        store.put_pending(part, vecs)
        known.update(zip(part, vecs))
        done += len(part)
        tokens += sum(chunks[i].n_tokens for i in batch)
        tick(done, tokens)
    return np.vstack([known[t] for t in texts]), len(todo)


def embed_missing(store: "Store", embedder: Embedder, name: str, progress: Any = True, *,
                  stop: Optional[threading.Event] = None) -> int:  # fmt: skip
    """Embed the chunks that have no vector (all of them after the embedding model changed).

    Returns how many were embedded (each batch is stored as it is done, so a stop keeps them).
    """
    todo = store.chunks_without_vectors()
    bar = _bar(progress, name) if todo else None
    if bar is not None:
        bar.reset(total=len(todo))
        bar.unit = "chunk"
        bar.set_description_str(f"{name}: embedding with {embedder.name}")
    for i in range(0, len(todo), EMBED_BATCH):
        _check(stop)
        part = todo[i : i + EMBED_BATCH]
        store.put_vectors([cid for cid, _ in part], embedder.embed([t for _, t in part]))
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.unit = "B"
        bar.set_description_str(name)
        if progress is True:
            bar.close()
    return len(todo)


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _bar(progress: Any, name: str) -> Any:
    if not progress:
        return None
    if progress is not True:
        return progress  # a tqdm-like object the caller made
    from tqdm.auto import tqdm

    return tqdm(total=0, desc=name, unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True)
