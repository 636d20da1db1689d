"""What the server has done: request counts by path and status, and the most recent requests."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass


@dataclass
class RequestRecord:
    time: float  # wall-clock seconds since the epoch
    method: str
    path: str
    status: int
    duration_s: float


class ServerStats:
    """Thread-safe counters, shared by the HTTP middleware, /metrics and ``%lm serve`` status."""

    def __init__(self, keep: int = 50) -> None:
        self.started = time.time()
        self.in_flight = 0
        self.counts: collections.Counter = collections.Counter()  # (path, status) -> requests
        self.recent: collections.deque[RequestRecord] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, method: str, path: str, status: int, duration_s: float) -> None:
        with self._lock:
            self.counts[(path, status)] += 1
            self.recent.append(RequestRecord(time.time(), method, path, status, duration_s))

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    @property
    def uptime_s(self) -> float:
        return time.time() - self.started
