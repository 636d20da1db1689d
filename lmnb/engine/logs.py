"""llama.cpp's own log lines, kept in a bounded ring buffer instead of the cell's stderr.

llama.cpp (and ggml) report through one C callback set with ``llama_log_set``. We replace the
callback llama-cpp-python installs at import, so that nothing is printed into notebook cells and
``%lm log`` can show the lines on demand.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

# ggml_log_level in this llama.cpp: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the
# previous line). (llama-cpp-python's _logger.py still documents the older order.)
_GGML_LEVELS = {0: "info", 1: "debug", 2: "info", 3: "warn", 4: "error"}
_RANK = {"debug": 0, "info": 1, "warn": 2, "error": 3}


@dataclass
class LogRecord:
    time: float
    level: str
    text: str

    def __str__(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.time))
        return f"{stamp} {self.level.upper():5} {self.text}"


class LogBuffer:
    """Thread-safe ring buffer of llama.cpp log lines."""

    def __init__(self, maxlen: int = 2000, level: str = "info") -> None:
        self._lines: deque[LogRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._partial = ""  # text of a line that has not seen its newline yet
        self._partial_level = "info"
        self.level = level

    # Called from C threads (ctypes takes the GIL for us).
    def write(self, ggml_level: int, text: str) -> None:
        if ggml_level == 5:  # GGML_LOG_LEVEL_CONT
            level = self._partial_level
        else:
            level = _GGML_LEVELS.get(ggml_level, "info")
        with self._lock:
            if ggml_level != 5 and self._partial:
                self._append(self._partial_level, self._partial)
                self._partial = ""
            self._partial_level = level
            buf = self._partial + text
            *lines, self._partial = buf.split("\n")
            for line in lines:
                self._append(level, line)

    def _append(self, level: str, line: str) -> None:
        if line.strip() and _RANK[level] >= _RANK.get(self.level, 1):
            self._lines.append(LogRecord(time.time(), level, line.rstrip()))

    def resize(self, maxlen: int) -> None:
        with self._lock:
            self._lines = deque(self._lines, maxlen=maxlen)

    def records(self, level: Optional[str] = None, last: Optional[int] = None) -> list[LogRecord]:
        """Kept lines, oldest first, optionally only those at ``level`` or above."""
        with self._lock:
            recs = list(self._lines)
            if self._partial.strip():
                recs.append(LogRecord(time.time(), self._partial_level, self._partial))
        if level:
            floor = _RANK[level]
            recs = [r for r in recs if _RANK[r.level] >= floor]
        return recs[-last:] if last else recs

    def errors_since(self, t0: float) -> list[str]:
        """Error and warning lines logged after ``t0``: the reason a load failed."""
        return [r.text for r in self.records(level="warn") if r.time >= t0]

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()
            self._partial = ""


LOGS = LogBuffer()


def logs(level: Optional[str] = None, last: Optional[int] = None) -> list[LogRecord]:
    """llama.cpp's log lines kept in the ring buffer (``level``: debug, info, warn, error)."""
    return LOGS.records(level=level, last=last)


_callback = None  # keeps the ctypes callback alive for as long as llama.cpp may call it


def install() -> LogBuffer:
    """Route llama.cpp logging into ``LOGS`` (idempotent)."""
    global _callback
    if _callback is not None:
        return LOGS
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _on_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        try:
            LOGS.write(level, text.decode("utf-8", errors="replace"))
        except Exception:  # never let a Python error unwind into C
            pass

    _callback = _on_log
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    return LOGS


def follow_config(cfg) -> None:
    """Keep the buffer's level and size in step with ``LM.log_level`` / ``LM.log_buffer_size``."""
    LOGS.level = cfg.log_level
    LOGS.resize(cfg.log_buffer_size)
    cfg.observe(lambda change: setattr(LOGS, "level", change["new"]), names=["log_level"])
    cfg.observe(lambda change: LOGS.resize(change["new"]), names=["log_buffer_size"])
