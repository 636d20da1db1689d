"""One document library on disk: a SQLite file with its files, their chunks, a full-text index
(FTS5, ranked by BM25) and the chunks' embedding vectors.

Vectors are stored with the identity of the model that made them; a library holds one model's
vectors at a time, and ``Store.set_model`` drops them when the model changes, so that vectors
from two models are never compared. Each file is written in one transaction (its row, chunks and
vectors together), so an indexing run that is interrupted keeps every file it finished; the
vectors of the file it was in are kept aside (``pending``, by chunk text), so that the next run
does not embed them again: a 500-page PDF interrupted at 90% goes on from 90%.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence

if TYPE_CHECKING:
    import numpy as np

    from .chunking import Chunk

SCHEMA_VERSION = 1
_IN_PART = 500  # keys per "IN (...)" query (SQLite allows 999 parameters in older builds)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, unit TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, indexed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS skipped(path TEXT PRIMARY KEY, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL, text TEXT NOT NULL, n_tokens INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, page_start INTEGER, page_end INTEGER);
CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks(file_id, ord);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
CREATE TABLE IF NOT EXISTS vectors(
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE, vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending(text_sha256 TEXT PRIMARY KEY, vec BLOB NOT NULL);
"""

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class FileRow:
    """An indexed file."""

    id: int
    path: str
    kind: str
    unit: str
    sha256: str
    size: int
    mtime: float
    indexed_at: float
    chunks: int = 0
    tokens: int = 0


@dataclass(frozen=True)
class ChunkRow:
    """An indexed chunk, with its file."""

    id: int
    path: str
    kind: str
    unit: str
    ord: int
    text: str
    n_tokens: int
    start: int
    end: int
    page_start: Optional[int]
    page_end: Optional[int]


class Store:
    """A library's SQLite file. Safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")  # readers (a search) do not wait on the indexer
        with self._lock:
            self._db.executescript(_SCHEMA)
            if self.meta("schema") is None:
                self.set_meta("schema", SCHEMA_VERSION)
        self._vectors_cache: Optional[tuple[int, "np.ndarray", "np.ndarray"]] = None
        self._generation = 0  # bumped on every write, so cached vectors know they are stale

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- meta ------------------------------------------------------------------------------
    def meta(self, key: str) -> Optional[object]:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: object) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # ---- files -----------------------------------------------------------------------------
    def files(self) -> list[FileRow]:
        """The indexed files, by path, with their chunk and token counts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT f.id, f.path, f.kind, f.unit, f.sha256, f.size, f.mtime, f.indexed_at, "
                "count(c.id), coalesce(sum(c.n_tokens), 0) FROM files f LEFT JOIN chunks c ON c.file_id = f.id "
                "GROUP BY f.id ORDER BY f.path"
            ).fetchall()
        return [FileRow(*r) for r in rows]

    def file(self, path: str) -> Optional[FileRow]:
        with self._lock:
            r = self._db.execute(
                "SELECT id, path, kind, unit, sha256, size, mtime, indexed_at FROM files WHERE path = ?", (path,)
            ).fetchone()
        return None if r is None else FileRow(*r)

    def put_file(self, path: str, *, kind: str, unit: str, sha256: str, size: int, mtime: float,
                 chunks: Sequence["Chunk"], vectors: Optional["np.ndarray"]) -> int:  # fmt: skip
        """Replace ``path``'s chunks (and their vectors, one row per chunk) in one transaction."""
        if vectors is not None and len(vectors) != len(chunks):
            raise ValueError(f"{len(vectors)} vectors for {len(chunks)} chunks")
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM files WHERE path = ?", (path,))
            self._db.execute("DELETE FROM skipped WHERE path = ?", (path,))
            cur = self._db.execute(
                "INSERT INTO files(path, kind, unit, sha256, size, mtime, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (path, kind, unit, sha256, size, mtime, time.time()),
            )
            file_id = cur.lastrowid
            for i, c in enumerate(chunks):
                cid = self._db.execute(
                    'INSERT INTO chunks(file_id, ord, text, n_tokens, start, "end", page_start, page_end) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (file_id, i, c.text, c.n_tokens, c.start, c.end, c.page_start, c.page_end),
                ).lastrowid
                if vectors is not None:
                    self._db.execute("INSERT INTO vectors(chunk_id, vec) VALUES (?, ?)", (cid, _blob(vectors[i])))
            self._generation += 1
        return file_id

    def touch_file(self, path: str, mtime: float) -> None:
        """Record a new modification time for a file whose content did not change."""
        with self._lock:
            self._db.execute("UPDATE files SET mtime = ? WHERE path = ?", (mtime, path))

    def remove_files(self, paths: Iterable[str]) -> int:
        """Drop files (and their chunks and vectors). Returns how many were indexed."""
        n = 0
        with self._lock, self._transaction():
            for p in paths:
                n += self._db.execute("DELETE FROM files WHERE path = ?", (p,)).rowcount
                self._db.execute("DELETE FROM skipped WHERE path = ?", (p,))
            self._generation += 1
        return n

    def skip(self, path: str, reason: str) -> None:
        """Record that ``path`` is not indexed, and why (a file skipped is no longer searched)."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM files WHERE path = ?", (path,))
            self._db.execute("INSERT OR REPLACE INTO skipped(path, reason, at) VALUES (?, ?, ?)",
                             (path, reason, time.time()))  # fmt: skip
            self._generation += 1

    def skipped(self) -> list[tuple[str, str]]:
        with self._lock:
            return [tuple(r) for r in self._db.execute("SELECT path, reason FROM skipped ORDER BY path")]

    # ---- chunks ----------------------------------------------------------------------------
    _CHUNK_COLS = ('c.id, f.path, f.kind, f.unit, c.ord, c.text, c.n_tokens, c.start, c."end", '
                   "c.page_start, c.page_end FROM chunks c JOIN files f ON f.id = c.file_id")  # fmt: skip

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The chunks with these ids."""
        with self._lock:
            return {r[0]: ChunkRow(*r) for r in self._select_in(f"SELECT {self._CHUNK_COLS} WHERE c.id", ids)}

    def _select_in(self, select: str, keys: Sequence) -> Iterator[tuple]:
        """Rows of ``select IN (keys)``, asked in parts: SQLite caps the parameters of one query."""
        for i in range(0, len(keys), _IN_PART):
            part = list(keys[i : i + _IN_PART])
            yield from self._db.execute(f"{select} IN ({','.join('?' * len(part))})", part)

    def file_chunks(self, path: str) -> list[ChunkRow]:
        """A file's chunks, in order."""
        with self._lock:
            rows = self._db.execute(f"SELECT {self._CHUNK_COLS} WHERE f.path = ? ORDER BY c.ord", (path,))
            return [ChunkRow(*r) for r in rows]

    def counts(self) -> tuple[int, int, int]:
        """Files, chunks and tokens indexed."""
        with self._lock:
            files = self._db.execute("SELECT count(*) FROM files").fetchone()[0]
            chunks, tokens = self._db.execute("SELECT count(*), coalesce(sum(n_tokens), 0) FROM chunks").fetchone()
        return files, chunks, tokens

    # ---- full text -------------------------------------------------------------------------
    def bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best chunks for ``query`` by BM25: (chunk id, score; higher is better).

        The query's words are searched for as plain terms joined by OR, so that punctuation or
        FTS5 syntax in what a user types (``AND``, quotes, ``*``) is never read as a query language.
        """
        words = _WORD.findall(query)
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in dict.fromkeys(words))
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
                "ORDER BY bm25(chunks_fts) LIMIT ?",
                (match, k),
            ).fetchall()
        return [(r[0], -r[1]) for r in rows]  # FTS5's bm25() is lower-is-better

    # ---- vectors ---------------------------------------------------------------------------
    def model(self) -> Optional[dict]:
        """The identity of the model whose vectors the library holds (``None``: none yet)."""
        return self.meta("embedding_model")  # type: ignore[return-value]

    def set_model(self, identity: dict) -> bool:
        """Make ``identity`` the library's embedding model; drops the vectors of another one.

        Returns whether the model changed (its chunks then need embedding again).
        """
        with self._lock, self._transaction():
            if self.model() == identity:
                return False
            self._db.execute("DELETE FROM vectors")
            self._db.execute("DELETE FROM pending")
            self.set_meta("embedding_model", identity)
            self._generation += 1
        return True

    def chunks_without_vectors(self) -> list[tuple[int, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT c.id, c.text FROM chunks c LEFT JOIN vectors v ON v.chunk_id = c.id "
                "WHERE v.chunk_id IS NULL ORDER BY c.id"
            ).fetchall()

    def put_vectors(self, ids: Sequence[int], vectors: "np.ndarray") -> None:
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors(chunk_id, vec) VALUES (?, ?)",
                [(i, _blob(v)) for i, v in zip(ids, vectors)],
            )
            self._generation += 1

    def pending(self, texts: Sequence[str]) -> dict[str, "np.ndarray"]:
        """The vectors kept aside for these chunk texts (embedded by a run that did not finish)."""
        import numpy as np

        keys = {_sha(t): t for t in texts}
        with self._lock:
            rows = self._select_in("SELECT text_sha256, vec FROM pending WHERE text_sha256", list(keys))
            return {keys[k]: np.frombuffer(v, dtype=np.float32) for k, v in rows}

    def put_pending(self, texts: Sequence[str], vectors: "np.ndarray") -> None:
        """Keep the vectors of chunks whose file is not stored yet (see ``pending``)."""
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO pending(text_sha256, vec) VALUES (?, ?)",
                                 [(_sha(t), _blob(v)) for t, v in zip(texts, vectors)])  # fmt: skip

    def clear_pending(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pending")

    def vectors(self) -> tuple["np.ndarray", "np.ndarray"]:
        """All chunk ids and their vectors (a matrix, one unit-length row each); cached until a write."""
        import numpy as np

        with self._lock:
            cached = self._vectors_cache
            if cached is not None and cached[0] == self._generation:
                return cached[1], cached[2]
            rows = self._db.execute("SELECT chunk_id, vec FROM vectors ORDER BY chunk_id").fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            mat = (np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows]) if rows
                   else np.zeros((0, 0), dtype=np.float32))  # fmt: skip
            self._vectors_cache = (self._generation, ids, mat)
            return ids, mat

    # ---- plumbing --------------------------------------------------------------------------
    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN … COMMIT, or ROLLBACK when the block raises (KeyboardInterrupt included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.nested = self.db.in_transaction
        if not self.nested:
            self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.nested:
            return
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _blob(v: "np.ndarray") -> bytes:
    import numpy as np

    return np.asarray(v, dtype=np.float32).tobytes()
