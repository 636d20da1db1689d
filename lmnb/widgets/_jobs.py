"""Plumbing the panes share: background threads (downloads, loads) so the kernel stays free
meanwhile, and a flag for "the pane is setting its own controls"."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Iterator, Optional


class Jobs:
    """Start daemon threads and wait for them: ``wait()`` lets tests and notebooks join a pane's work."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, target: Callable[..., Any], *args: Any) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=self.name, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()
        return t

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until every thread started here is over; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            alive[0].join(left)


class Quiet:
    """Up while a pane sets its own controls, so its observers do not act on their own echo.

    >>> with self._quiet():  # observers see ``bool(self._quiet)`` is True
    ...     self.dropdown.value = ...
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0  # nested and cross-thread uses count up and down

    def __bool__(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
