"""Chat with your documents: local document libraries with hybrid search and cited answers.

    import lmnb
    lmnb.load()
    lmnb.docs.add("papers", "~/papers")            # .pdf .docx .md .txt .html .csv, with a progress bar
    for hit in lmnb.docs.search("papers", "sample size of the pilot study"):
        print(hit.where, hit.text)
    lmnb.chat("What did the pilot find?", docs="papers").text   # cites its sources as [1], [2]

Everything stays on this machine: the index is a SQLite file per library (full text with BM25,
and the chunks' embedding vectors) in ``LM.docs_dir``.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence, Union

from ..api import get_engine
from .index import IndexReport
from .library import Library, LibraryInfo, names, remove as _remove_library
from .ranking import Hit

__all__ = ["add", "search", "list", "remove", "library", "Library", "LibraryInfo", "Hit", "IndexReport"]

_list = list  # the builtin, before ``list`` below names the verb


def add(name: str, paths: Union[str, Sequence[str], None] = None, *, model: Optional[str] = None,
        progress: Any = True, stop: Optional[threading.Event] = None) -> IndexReport:  # fmt: skip
    """Index files and folders into the library ``name`` (made on first use).

    Folders are read recursively (.txt, .md, .pdf, .docx, .html, .csv; hidden files and other
    types are left out), split into chunks of ``LM.docs_chunk_tokens`` tokens that overlap by
    ``LM.docs_chunk_overlap``, and indexed for full-text and vector search. Adding again re-reads
    only the files whose content changed and drops the files gone from those folders. Files that
    cannot be read (encrypted, binary, too large, unreadable) are skipped, each with a reason.
    Ctrl-C (or the kernel's interrupt) stops it; the files finished are kept, and adding again
    goes on from there.

    Args:
        name: the library's name (letters, digits, ``_``, ``-``, ``.``).
        paths: files and folders; ``None`` indexes the library's folders again.
        model: the embedding model (a name or path, loaded beside the chat model); ``None``: the
            embedding model loaded, else ``LM.embedding_model``, else the chat model. A library's
            vectors come from one model: another model embeds it all again.
        progress: show a progress bar (bytes, moved as chunks are embedded; files, chunks,
            tokens/s), or a tqdm-like object to drive.
        stop: an event that, once set (from another thread), ends the run within one embedding
            call: the file being embedded is dropped, the files finished are kept, and the report
            says ``interrupted``.

    Returns:
        An ``IndexReport``: files added, updated, unchanged, removed and skipped (with reasons).

    Raises:
        NoModelLoaded: no model is loaded to embed with.
        ValueError: the name is not a valid library name.
    """
    lib = Library(name, create=True)
    if paths is None and not lib.roots:
        raise ValueError(f"library {name!r} has no folders yet: lmnb.docs.add({name!r}, FOLDER)")
    return lib.add(paths, get_engine(), model=model, progress=progress, stop=stop)


def search(name: str, query: str, k: int = 5, *, mode: str = "auto", model: Optional[str] = None) -> _list[Hit]:
    """The ``k`` chunks of library ``name`` that best match ``query``.

    Args:
        name: the library.
        query: what to look for, in words.
        k: how many hits.
        mode: ``"hybrid"`` (full text and vectors, fused by reciprocal rank), ``"bm25"`` (the
            words alone; needs no model), ``"vector"`` (meaning alone), or ``"auto"``: hybrid when
            the vectors come from a dedicated embedding model (``lmnb.load_embedder``), else BM25,
            which beats a chat model's mean-pooled vectors (``bench/retrieval_bench.py``).
        model: the embedding model, as for ``add``.

    Returns:
        ``Hit`` objects, best first: the chunk's file, ``where`` (page, lines or paragraphs),
        ``text`` and ``score``.

    Raises:
        KeyError: no library has this name.
        NoModelLoaded: ``mode`` needs vectors and no model is loaded.
    """
    lib = Library(name)
    engine = None if mode == "bm25" else get_engine()
    if mode == "auto" and not (engine.loaded or engine.embedder_info is not None):
        engine = None  # no model to embed with: the words alone
    return lib.search(query, engine, k, mode=mode, model=model)


def list() -> _list[LibraryInfo]:  # noqa: A001 - the verb's name, as lmnb.docs.list()
    """The libraries on this machine: files, chunks, tokens and embedding model of each."""
    return [Library(n).info() for n in names()]


def library(name: str) -> Library:
    """The library ``name``: ``.files()``, ``.skipped()``, ``.info()``, ``.roots``.

    Raises:
        KeyError: no library has this name.
    """
    return Library(name)


def remove(name: str) -> bool:
    """Delete library ``name``'s index (the documents themselves are never touched).

    Returns:
        Whether it existed.
    """
    return _remove_library(name)
