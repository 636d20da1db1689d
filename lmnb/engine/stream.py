"""One request's events on their way from the worker to its readers, with wake-ups paced.

A reader waiting for the next token is woken at once when it comes, unless the last wake-up was
less than ``WAKE_EVERY_S`` ago: then the token waits in the stream and the reader, which knows
when it was last woken, picks it up by the end of that interval with whatever came since. So a
slow reply streams token by token, and a fast one in bursts of a few tokens at display speed.

Why: every wake-up of a waiting thread costs the decode loop ~30 µs (the futex call on the
worker, then the reader's Python on a core the decode threads use), which is ~0.5% of a small
model's speed on two cores, and nobody reads 150 tokens a second one by one. The first event
and the end are never held (time to first token is unchanged), and nothing waits longer than
``WAKE_EVERY_S``.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import AsyncIterator, Callable

WAKE_EVERY_S = 0.03  # at most ~33 wake-ups a second per reader while tokens come faster

Event = tuple[str, object]


class EventStream:
    """Events of one request: ``put`` on the producing thread, ``get`` / ``aiter`` on readers'."""

    def __init__(self) -> None:
        self._items: collections.deque[Event] = collections.deque()
        self._ready = threading.Event()  # set by a wake-up; readers clear it before they wait
        self._woken = float("-inf")  # when the producer last woke the readers (time.monotonic)
        self._wakers: list[Callable[[], None]] = []  # asyncio readers' wake-ups

    def put(self, event: Event, urgent: bool = False) -> None:
        """Add ``event``; wake the readers now if ``urgent`` or the last wake-up is old enough."""
        self._items.append(event)
        now = time.monotonic()
        if urgent or now - self._woken >= WAKE_EVERY_S:
            self._woken = now
            self._ready.set()
            for wake in list(self._wakers):
                try:
                    wake()
                except RuntimeError:  # the waiting event loop has closed
                    pass

    def _wait_s(self, longest: float) -> float:
        """How long a reader that found nothing may wait: until the end of the interval of the
        last wake-up (an event put since then woke nobody), else until the next wake-up."""
        held_until = self._woken + WAKE_EVERY_S
        now = time.monotonic()
        return min(longest, held_until - now) if now < held_until else longest

    def get(self, timeout: float) -> Event:
        """The next event, waiting up to ``timeout`` seconds; raises ``queue.Empty`` after that."""
        deadline = time.monotonic() + timeout
        while True:
            if self._items:
                return self._items.popleft()
            self._ready.clear()
            if self._items:  # put between the check and the clear
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise queue.Empty
            self._ready.wait(self._wait_s(left))

    async def aiter(self) -> AsyncIterator[Event]:
        """The events as they come, for asyncio code: waits without blocking the event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        waker = lambda: loop.call_soon_threadsafe(ready.set)  # noqa: E731
        self._wakers.append(waker)  # registered before looking, so no wake-up is lost
        try:
            while True:
                if self._items:
                    yield self._items.popleft()
                    continue
                ready.clear()
                if self._items:
                    continue
                try:
                    await asyncio.wait_for(ready.wait(), self._wait_s(3600.0))
                except asyncio.TimeoutError:
                    pass
        finally:
            self._wakers.remove(waker)
