"""Every generation, recorded in SQLite: what was asked, of which exact file, with which settings.

Rows are written by a background thread so that recording never delays the next token. The
model file's sha256 is computed once per (path, size, mtime) and cached in the same database.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from typing import Any, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    request_id TEXT,
    kind TEXT,                -- chat | complete
    conversation TEXT,
    model TEXT,
    model_path TEXT,
    model_sha256 TEXT,
    params TEXT,              -- JSON: every sampling parameter
    seed INTEGER,
    messages TEXT,            -- JSON list for chat, or the prompt string
    output TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cached_tokens INTEGER,
    ttft_s REAL,
    prompt_tokens_per_s REAL,
    generation_tokens_per_s REAL,
    sources TEXT              -- JSON: the document chunks a docs= chat put in the prompt (lmnb.docs)
);
CREATE TABLE IF NOT EXISTS model_uses (
    path TEXT PRIMARY KEY,    -- a model file as loaded (absolute)
    last_used TEXT NOT NULL   -- ISO time of the last load
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER,
    mtime REAL,
    sha256 TEXT
);
"""

_sha_cache: dict[tuple[str, int, float], str] = {}
_sha_lock = threading.Lock()


def known_sha256(path: str, db_path: Optional[str] = None) -> Optional[str]:
    """The file's sha256 if it was computed before (memory or history DB), else ``None``; never hashes."""
    try:
        key = _file_key(path)
    except OSError:
        return None
    with _sha_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    if db_path and os.path.exists(db_path):
        try:
            with _connect(db_path) as con:
                row = con.execute("SELECT sha256 FROM files WHERE path=? AND size=? AND mtime=?", key).fetchone()
        except sqlite3.Error:
            return None
        if row:
            with _sha_lock:
                _sha_cache[key] = row[0]
            return row[0]
    return None


def file_sha256(path: str, db_path: Optional[str] = None) -> str:
    """sha256 of a model file, computed once and remembered (in memory and in the history DB)."""
    known = known_sha256(path, db_path)
    if known is not None:
        return known
    key = _file_key(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _sha_lock:
        _sha_cache[key] = digest
    if db_path:
        try:
            with _connect(db_path) as con:
                con.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?)", (*key, digest))
        except sqlite3.Error:
            pass
    return digest


_hashing: dict[str, threading.Thread] = {}  # path -> the thread hashing it (started at load)


def hash_in_background(path: str, db_path: Optional[str] = None) -> None:
    """Start hashing ``path`` on a daemon thread (once per path), so the first reply never waits for it."""
    with _sha_lock:
        if path in _hashing:
            return
        t = _hashing[path] = threading.Thread(target=_hash_quietly, args=(path, db_path), daemon=True,
                                              name="lmnb-sha256")
    t.start()


def _hash_quietly(path: str, db_path: Optional[str]) -> None:
    try:
        file_sha256(path, db_path)
    except (OSError, sqlite3.Error):  # a file deleted meanwhile: asked again, it raises there
        pass


def wait_sha256(path: str, db_path: Optional[str] = None) -> str:
    """sha256 of ``path``, waiting for a background hash of it to finish rather than hashing twice."""
    with _sha_lock:
        t = _hashing.get(path)
    if t is not None:
        t.join()
    return file_sha256(path, db_path)


def _file_key(path: str) -> tuple[str, int, float]:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime)


def _connect(db_path: str) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(os.path.abspath(db_path)), exist_ok=True)
    con = sqlite3.connect(db_path, timeout=10)
    con.executescript(SCHEMA)
    have = {r[1] for r in con.execute("PRAGMA table_info(generations)")}
    for column, kind in _ADDED_COLUMNS:  # a history file written by an older lmnb gains them
        if column not in have:
            con.execute(f"ALTER TABLE generations ADD COLUMN {column} {kind}")
    return con


# columns added to ``generations`` after its first release, in order
_ADDED_COLUMNS = (("cached_tokens", "INTEGER"), ("sources", "TEXT"))


def record_use(path: str, db_path: str) -> None:
    """Remember when a model file was last loaded (shown by ``lmnb.models()``)."""
    try:
        with _connect(db_path) as con:
            con.execute("INSERT OR REPLACE INTO model_uses VALUES (?, ?)",
                        (os.path.abspath(path), time.strftime("%Y-%m-%dT%H:%M:%S")))  # fmt: skip
    except sqlite3.Error:
        pass  # the library listing is a convenience; never fail a load over it


def last_uses(db_path: str) -> dict[str, str]:
    """``{absolute path: ISO time}`` of every model file loaded before."""
    if not os.path.exists(db_path):
        return {}
    try:
        with _connect(db_path) as con:
            return dict(con.execute("SELECT path, last_used FROM model_uses").fetchall())
    except sqlite3.Error:
        return {}


class HistoryWriter:
    """Appends generation records to SQLite from a background thread."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[Optional[tuple[str, dict]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def record(self, db_path: str, row: dict[str, Any]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lmnb-history", daemon=True)
                self._thread.start()
        self._queue.put((db_path, row))

    def flush(self, timeout: float = 30) -> None:
        """Wait until every queued record is written."""
        deadline = time.time() + timeout
        while self._queue.unfinished_tasks and time.time() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                db_path, row = item
                if row.get("model_path") and not row.get("model_sha256"):
                    try:
                        row["model_sha256"] = file_sha256(row["model_path"], db_path)
                    except OSError:
                        row["model_sha256"] = None
                with _connect(db_path) as con:
                    cols = ", ".join(row)
                    marks = ", ".join("?" for _ in row)
                    con.execute(f"INSERT INTO generations ({cols}) VALUES ({marks})", list(row.values()))
            except Exception:
                pass  # history must never break generation
            finally:
                self._queue.task_done()


WRITER = HistoryWriter()


def make_row(
    *,
    request_id: str,
    kind: str,
    conversation: Optional[str],
    model: str,
    model_path: Optional[str],
    model_sha256: Optional[str],
    params: dict[str, Any],
    messages: Any,
    completion: Any,
) -> dict[str, Any]:
    c = completion
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
        "request_id": request_id,
        "kind": kind,
        "conversation": conversation,
        "model": model,
        "model_path": model_path,
        "model_sha256": model_sha256,
        "params": json.dumps(params),
        "seed": params.get("seed"),
        "messages": json.dumps(messages) if not isinstance(messages, str) else messages,
        "output": c.text,
        "finish_reason": c.finish_reason,
        "prompt_tokens": c.usage.prompt_tokens,
        "completion_tokens": c.usage.completion_tokens,
        "cached_tokens": c.usage.cached_tokens,
        "ttft_s": c.timings.ttft_s,
        "prompt_tokens_per_s": c.timings.prompt_tokens_per_s,
        "generation_tokens_per_s": c.timings.generation_tokens_per_s,
        "sources": json.dumps(c.sources) if getattr(c, "sources", None) else None,
    }


def read(db_path: str, last: Optional[int] = None) -> list[dict[str, Any]]:
    """History rows, oldest first (only the ``last`` N when given)."""
    if not os.path.exists(db_path):
        return []
    with _connect(db_path) as con:
        con.row_factory = sqlite3.Row
        if last:
            rows = con.execute(
                "SELECT * FROM (SELECT * FROM generations ORDER BY id DESC LIMIT ?) ORDER BY id", (last,)
            ).fetchall()
        else:
            rows = con.execute("SELECT * FROM generations ORDER BY id").fetchall()
    out = []
    for r in rows:
        d = dict(r)
        for k in ("params",):
            try:
                d[k] = json.loads(d[k]) if d[k] else {}
            except ValueError:
                pass
        out.append(d)
    return out
