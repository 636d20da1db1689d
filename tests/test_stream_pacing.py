"""A request's event stream (``lmnb.engine.stream``): readers get every event in order, nothing
waits for a wake-up that never comes, and tokens faster than a display wake a reader in bursts."""

from __future__ import annotations

import asyncio
import threading
import time

from lmnb.engine.stream import EventStream

N = 2000


def produce(stream: EventStream, n: int = N) -> threading.Thread:
    def run() -> None:
        for i in range(n):
            stream.put(("delta", i))
        stream.put(("done", None), urgent=True)

    t = threading.Thread(target=run)
    t.start()
    return t


def read_all(stream: EventStream) -> list:
    out = []
    while True:
        kind, payload = stream.get(timeout=30)
        if kind == "done":
            return out
        out.append(payload)


def test_a_reader_gets_every_event_in_order_however_fast_they_come():
    stream = EventStream()
    producer = produce(stream)
    assert read_all(stream) == list(range(N))
    producer.join()


def test_an_asyncio_reader_gets_every_event_in_order():
    async def main() -> list:
        stream = EventStream()
        producer = produce(stream)
        out = []
        async for kind, payload in stream.aiter():
            if kind == "done":
                break
            out.append(payload)
        producer.join()
        return out

    assert asyncio.run(main()) == list(range(N))


def counting_wakes(stream: EventStream) -> list[int]:
    """Count the stream's wake-ups of waiting readers (a one-item list, read after the test)."""
    wakes = [0]
    set_ready = stream._ready.set

    def counted() -> None:
        wakes[0] += 1
        set_ready()

    stream._ready.set = counted  # type: ignore[method-assign]
    return wakes


def test_an_event_that_woke_nobody_still_reaches_a_waiting_reader():
    # "b" comes within "a"'s interval, so it wakes nobody: the reader, back to waiting after "a",
    # must fetch it by itself, with no later event to wake it (and no "done").
    stream = EventStream()
    wakes = counting_wakes(stream)
    got_a = threading.Event()
    got: list = []
    waited: list = []

    def reader() -> None:
        got.append(stream.get(timeout=5))
        got_a.set()
        t0 = time.monotonic()
        got.append(stream.get(timeout=20))
        waited.append(time.monotonic() - t0)

    t = threading.Thread(target=reader)
    t.start()
    stream.put(("delta", "a"))
    assert got_a.wait(5)
    stream.put(("delta", "b"))
    t.join(10)
    assert got == [("delta", "a"), ("delta", "b")]
    # held at most 30 ms: 5 s only on a reader that waited for a wake-up that never comes
    assert waited[0] < 5, waited
    assert 1 <= wakes[0] <= 2  # 1 unless "b" came over 30 ms after "a" (a very busy machine)


def test_an_event_that_woke_nobody_still_reaches_an_asyncio_reader():
    stream = EventStream()
    wakes = counting_wakes(stream)

    async def main() -> list:
        got = []
        loop = asyncio.get_running_loop()
        loop.call_soon(stream.put, ("delta", "c"))
        async for event in stream.aiter():
            got.append(event)
            if len(got) == 1:
                loop.call_soon(stream.put, ("delta", "d"))  # once this reader waits again
            else:
                return got
        return got

    assert asyncio.run(asyncio.wait_for(main(), 5)) == [("delta", "c"), ("delta", "d")]
    assert 1 <= wakes[0] <= 2


def test_fast_events_wake_a_waiting_reader_in_bursts_not_once_each():
    # What the pacing is for: each wake-up costs the decode loop ~30 us. A reader waiting for
    # 2,000 events put back to back is woken a handful of times (once per 30 ms at most).
    stream = EventStream()
    wakes = counting_wakes(stream)
    producer = produce(stream)
    assert read_all(stream) == list(range(N))
    producer.join()
    assert 1 <= wakes[0] < N // 10, wakes[0]
