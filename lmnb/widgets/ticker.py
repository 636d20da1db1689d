"""One shared background thread that calls the live panes about once a second.

    unsubscribe = subscribe(refresh)   # refresh() is called from the ticker thread
    unsubscribe()                      # the thread exits when nobody is left

Every pane of the studio polls something (system counters, the server's requests, the log
buffer); one daemon thread for all of them instead of one each. Callbacks run one after the
other, never under the lock that ``subscribe``/``unsubscribe`` take, so neither ever waits for a
refresh. A callback that raises is skipped for that tick; the others still run.
"""

from __future__ import annotations

import itertools
import threading
from typing import Callable, Optional

INTERVAL = 1.0  # seconds between ticks (read at every tick, so tests may shorten it)
NAME = "lmnb-ticker"

_lock = threading.Lock()
_subs: dict[int, Callable[[], object]] = {}
_ids = itertools.count()
_thread: Optional[threading.Thread] = None
_stop: Optional[threading.Event] = None


def subscribe(fn: Callable[[], object]) -> Callable[[], None]:
    """Call ``fn()`` about once a second from the ticker thread; returns the unsubscribe callable."""
    global _thread, _stop
    key = next(_ids)
    with _lock:
        _subs[key] = fn
        if _thread is None or not _thread.is_alive() or _stop is None or _stop.is_set():
            _stop = threading.Event()
            _thread = threading.Thread(target=_run, args=(_stop,), name=NAME, daemon=True)
            _thread.start()

    def unsubscribe() -> None:
        global _thread, _stop
        with _lock:
            _subs.pop(key, None)
            if not _subs and _stop is not None:
                _stop.set()  # wakes the thread at once; it exits without another tick
                _thread, _stop = None, None

    return unsubscribe


def _run(stop: threading.Event) -> None:
    while not stop.wait(INTERVAL):
        with _lock:
            if stop.is_set():
                return
            fns = list(_subs.values())
        for fn in fns:
            if stop.is_set():
                return
            try:
                fn()
            except Exception:  # a broken pane must not stop the others (or the thread)
                pass


def running() -> bool:
    """Whether a ticker thread is alive (one that is stopping counts until it has exited)."""
    return any(t.name == NAME and t.is_alive() for t in threading.enumerate())


def subscribers() -> int:
    with _lock:
        return len(_subs)


def wait_stopped(timeout: float = 5.0) -> bool:
    """Wait until no ticker thread is alive (tests); returns whether none is."""
    for t in [t for t in threading.enumerate() if t.name == NAME]:
        t.join(timeout)
    return not running()
