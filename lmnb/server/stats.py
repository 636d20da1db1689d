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
        self._in_flight = 0
        self.in_flight_max = 0  # the most requests handled at once since the start
        self.counts: collections.Counter = collections.Counter()  # (path, status) -> requests
        self.recent: collections.deque[RequestRecord] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, method: str, path: str, status: int, duration_s: float) -> None:
        with self._lock:
            self.counts[(path, status)] += 1
            self.recent.append(RequestRecord(time.time(), method, path, status, duration_s))

    @property
    def in_flight(self) -> int:
        """HTTP requests being handled now."""
        return self._in_flight

    @in_flight.setter
    def in_flight(self, n: int) -> None:
        # the middleware counts with += and -= on the event loop's one thread: the peak is kept
        # here, where every change passes, so a burst between two scrapes is not missed
        self._in_flight = n
        if n > self.in_flight_max:
            self.in_flight_max = n

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    @property
    def uptime_s(self) -> float:
        return time.time() - self.started
