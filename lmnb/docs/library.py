"""A named document library: where its file lives, and what can be done with it (index, search).

Libraries live in ``LM.docs_dir`` (``docs/`` in the user data folder), one SQLite file each.
A ``Library`` works on the engine it is given, so both the verbs (``lmnb.docs``) and the API's
``chat(docs=...)`` use it without importing each other.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from ..config import get_config
from .index import Embedder, IndexReport, index
from .ranking import MODES, Hit, hits, rank
from .store import FileRow, Store

if TYPE_CHECKING:
    from ..engine import Engine

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_open: dict[str, Store] = {}
_open_lock = threading.Lock()


def docs_dir() -> str:
    """The folder holding the libraries."""
    cfg = get_config()
    if cfg.docs_dir:
        return os.path.expanduser(cfg.docs_dir)
    from platformdirs import user_data_dir

    return os.path.join(user_data_dir("lmnb", appauthor=False), "docs")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".sqlite"):
        raise ValueError(f"library name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
                         "starting with a letter or digit")  # fmt: skip
    return name


def names() -> list[str]:
    """The libraries on this machine, by name."""
    folder = docs_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(f[: -len(".sqlite")] for f in os.listdir(folder) if f.endswith(".sqlite"))


@dataclass(frozen=True)
class LibraryInfo:
    """A library at a glance."""

    name: str
    files: int
    chunks: int
    tokens: int
    skipped: int
    model: Optional[str]  # the embedding model of its vectors
    roots: tuple[str, ...]
    path: str

    def __str__(self) -> str:
        return (f"{self.name}: {self.files} files, {self.chunks} chunks, {self.tokens:,} tokens"
                f"{f', {self.skipped} skipped' if self.skipped else ''}"
                f"{f' (vectors: {self.model})' if self.model else ''}")  # fmt: skip


class Library:
    """One library. ``Library(name)`` opens it (``create=True``: makes it when missing).

    Raises:
        KeyError: no library has this name (and ``create`` is false).
        ValueError: the name is not a valid library name.
    """

    def __init__(self, name: str, *, create: bool = False) -> None:
        self.name = check_name(name)
        self.path = os.path.join(docs_dir(), name + ".sqlite")
        with _open_lock:
            store = _open.get(self.path)
            if store is None:
                if not create and not os.path.exists(self.path):
                    known = ", ".join(names()) or "none yet"
                    raise KeyError(f"no document library named {name!r} (libraries: {known}); "
                                   f"make one with lmnb.docs.add({name!r}, FOLDER)")  # fmt: skip
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                store = _open[self.path] = Store(self.path)
        self.store = store

    # ---- indexing --------------------------------------------------------------------------
    @property
    def roots(self) -> list[str]:
        """The files and folders added, which ``add`` with no paths indexes again."""
        return list(self.store.meta("roots") or [])

    def add(self, paths: Union[str, Sequence[str], None], engine: "Engine", *, model: Optional[str] = None,
            progress: Any = True, stop: Optional[threading.Event] = None) -> IndexReport:  # fmt: skip
        """Index ``paths`` (all the library's roots when ``None``); see ``lmnb.docs.add``."""
        if paths is None:
            roots = self.roots
        else:
            roots = [os.path.abspath(os.path.expanduser(os.fspath(p)))
                     for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]  # fmt: skip
            self.store.set_meta("roots", sorted(set(self.roots) | set(roots)))
        cfg = get_config()
        return index(self.name, self.store, roots, Embedder(engine, model), size=cfg.docs_chunk_tokens,
                     overlap=cfg.docs_chunk_overlap, max_bytes=int(cfg.docs_max_file_mb * 2**20),
                     progress=progress, stop=stop)  # fmt: skip

    # ---- searching -------------------------------------------------------------------------
    def search(self, query: str, engine: Optional["Engine"], k: int = 5, *, mode: str = "auto",
               model: Optional[str] = None) -> list[Hit]:  # fmt: skip
        """The ``k`` chunks that best match ``query``; see ``lmnb.docs.search``."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("the query is empty")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r}: must be a positive integer")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: must be one of {', '.join(MODES)}")
        vector = None
        if mode != "bm25":
            if engine is None:
                if mode != "auto":
                    raise ValueError(f"mode={mode!r} needs an embedding model; mode='bm25' searches the text alone")
                mode = "bm25"
            else:
                embedder = Embedder(engine, model)
                if mode == "auto":
                    mode = "hybrid" if embedder.dedicated else "bm25"
                if mode != "bm25":
                    self.ensure_vectors(embedder)
                    vector = embedder.embed([query])[0]
        return hits(self.name, self.store, rank(self.store, query, k, mode, vector))

    def ensure_vectors(self, embedder: Embedder, progress: Any = True) -> int:
        """Embed again with ``embedder`` when the library's vectors come from another model.

        Returns how many chunks were embedded.
        """
        if self.store.model() == embedder.identity and not self.store.chunks_without_vectors():
            return 0
        from .index import embed_missing

        self.store.set_model(embedder.identity)
        return embed_missing(self.store, embedder, self.name, progress)

    # ---- looking -------------------------------------------------------------------------
    def files(self) -> list[FileRow]:
        """The indexed files (path, kind, hash, size, chunks, tokens)."""
        return self.store.files()

    def skipped(self) -> list[tuple[str, str]]:
        """The files not indexed, each with the reason."""
        return self.store.skipped()

    def info(self) -> LibraryInfo:
        files, chunks, tokens = self.store.counts()
        model = self.store.model()
        return LibraryInfo(self.name, files, chunks, tokens, len(self.store.skipped()),
                           model.get("name") if model else None, tuple(self.roots), self.path)  # fmt: skip

    def __repr__(self) -> str:
        return f"<Library {self.info()}>"


def remove(name: str) -> bool:
    """Delete a library's index (never the documents). Returns whether it existed."""
    path = os.path.join(docs_dir(), check_name(name) + ".sqlite")
    with _open_lock:
        store = _open.pop(path, None)
        if store is not None:
            store.close()
    existed = os.path.exists(path)
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
    return existed
