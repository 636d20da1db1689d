"""Several OpenAI-compatible servers as one backend, and ``lmnb.map``'s rows spread over them.

``lmnb.connect([url1, url2, ...])`` returns a ``Farm``. A chat or a cell goes to the first
endpoint that is up (a request that cannot reach it moves on to the next before any text is
streamed); ``lmnb.map`` runs its rows through ``Farm.spread``: at most ``parallel`` requests in
flight over all endpoints, each endpoint given its share (the least busy gets the next row), a
row whose endpoint failed sent again to another, and an endpoint that keeps failing set aside for
the rest of the job. A single ``RemoteBackend`` goes through ``spread`` too, as a farm of one.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Optional, Sequence, Union

from .errors import LmnbError
from .remote import EndpointError, RemoteBackend, new_request
from .types import SamplingParams, Status

SET_ASIDE_AFTER = 2  # failures in a row (each already retried with backoff) before a job stops using an endpoint
ROW_TRIES = 3  # times one row is sent before its error is kept
RECHECK_S = 60.0  # a set-aside endpoint gets chats again after this long


def connect_backend(url: Union[str, Sequence[str]], *, api_key: Optional[str] = None,
                    model: Optional[str] = None) -> Union[RemoteBackend, "Farm"]:  # fmt: skip
    """A ``RemoteBackend`` for one URL (as before farms existed); a ``Farm`` for several."""
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("connect() needs at least one URL")
    endpoints = [RemoteBackend(u, api_key=api_key, model=model) for u in urls]
    return endpoints[0] if len(endpoints) == 1 else Farm(endpoints)


class Farm:
    """Several servers of the same model, as one backend (``lmnb.connect([url1, url2])``).

    ``endpoints`` are the ``RemoteBackend`` of each URL, in the order given: chats prefer the first.
    """

    def __init__(self, endpoints: Sequence[RemoteBackend]) -> None:
        self.endpoints = list(endpoints)
        self.n_parallel = sum(e.n_parallel for e in self.endpoints)
        self._down: dict[str, float] = {}  # url -> when it was set aside (time.monotonic)
        self._lock = threading.Lock()

    # --- the engine's interface, as used by lmnb.api --------------------------------------------
    @property
    def loaded(self) -> bool:
        return True

    @property
    def info(self) -> None:
        return None

    @property
    def url(self) -> str:
        return ", ".join(e.url for e in self.endpoints)

    @property
    def model(self) -> str:
        return self.endpoints[0].model

    @property
    def available(self) -> list[str]:
        return list(dict.fromkeys(m for e in self.endpoints for m in e.available))

    @property
    def tokens_generated(self) -> int:
        return sum(e.tokens_generated for e in self.endpoints)

    @property
    def requests_served(self) -> int:
        return sum(e.requests_served for e in self.endpoints)

    @property
    def last_tokens_per_s(self) -> Optional[float]:
        return next((e.last_tokens_per_s for e in self.endpoints if e.last_tokens_per_s), None)

    def submit(self, spec: Any, *, stages: Any = (), on_done: Any = ()) -> Any:
        req, explicit = new_request(spec, stages, on_done)
        threading.Thread(target=self._run, args=(req, explicit), name=f"lmnb-farm-{req.id}", daemon=True).start()
        return req

    def status(self) -> Status:
        import psutil

        up = len(self.endpoints) - len(self._down)
        return Status(loaded=True, rss_bytes=psutil.Process().memory_info().rss,
                      last_tokens_per_s=self.last_tokens_per_s, requests_served=self.requests_served,
                      backend=f"{self.url} ({self.model}; {up} of {len(self.endpoints)} up)")

    def set_aside(self, endpoint: RemoteBackend) -> None:
        with self._lock:
            self._down[endpoint.url] = time.monotonic()

    def up(self) -> list[RemoteBackend]:
        """The endpoints in the order a chat tries them: those up first, then those set aside
        (the ones set aside longest ago first: they may be back)."""
        now = time.monotonic()
        with self._lock:
            down = {u: t for u, t in self._down.items() if now - t < RECHECK_S}
        return ([e for e in self.endpoints if e.url not in down]
                + sorted((e for e in self.endpoints if e.url in down), key=lambda e: down[e.url]))  # fmt: skip

    def _run(self, req: Any, explicit: SamplingParams) -> None:
        error: Optional[BaseException] = None
        for endpoint in self.up():
            error = endpoint.serve(req, explicit)
            if error is None:
                with self._lock:
                    self._down.pop(endpoint.url, None)
                return
            if not isinstance(error, EndpointError) or error.streamed or req.cancelled:
                break  # the server's answer, or text already shown: another server would not undo it
            self.set_aside(endpoint)
        assert error is not None
        req.fail(error)

    # --- lmnb.map ----------------------------------------------------------------------------------
    def spread(self, specs: Sequence[Any], todo: Sequence[int], parallel: int,
               submit: Callable[[Any, RemoteBackend], Any],
               finished: Callable[[int, Any], None]) -> tuple[dict[int, Any], bool, dict[str, int]]:  # fmt: skip
        """Run rows ``todo`` of ``specs``, never more than ``parallel`` requests in flight in all.

        Args:
            specs: one ``GenerationSpec`` per row.
            todo: the rows to run (positions in ``specs``), in the order to start them.
            parallel: requests in flight at most, over every endpoint together.
            submit: sends one spec to one endpoint and returns the ``Request``.
            finished: called (on this thread) with each row and its final ``Request`` (or error) as it ends.

        Returns:
            Each row's final ``Request`` (or the ``LmnbError`` of a row no endpoint was left to
            serve; rows never started after an interrupt are missing), whether Ctrl-C
            interrupted the job (in-flight requests are then cancelled), and counts of retried
            rows and endpoints set aside.
        """
        if parallel < 1:
            raise ValueError(f"parallel={parallel}: must be at least 1")
        n = len(self.endpoints)
        queue = collections.deque(todo)
        in_flight: dict[int, tuple[Any, int]] = {}  # row -> (request, endpoint)
        load, strikes, tries = [0] * n, [0] * n, collections.Counter()
        last_failed: dict[int, int] = {}  # row -> the endpoint it last failed on (avoided next time)
        aside: dict[int, str] = {}  # endpoint -> why it was set aside
        out: dict[int, Any] = {}
        retried = 0
        try:
            while queue or in_flight:
                live = [e for e in range(n) if e not in aside]
                while queue and live and len(in_flight) < parallel:
                    i = queue.popleft()
                    e = min(live, key=lambda k: (k == last_failed.get(i), load[k], k))
                    in_flight[i] = (submit(specs[i], self.endpoints[e]), e)
                    load[e] += 1
                if not live and queue:
                    why = "; ".join(aside.values())
                    for i in queue:
                        out[i] = LmnbError(f"not sent: every server was set aside after failing ({why})")
                        finished(i, out[i])
                    queue.clear()
                ended = [i for i, (r, _) in in_flight.items() if r.done]
                if not ended:
                    time.sleep(0.02)
                    continue
                for i in ended:
                    req, e = in_flight[i]  # left there until settled: a Ctrl-C now loses no row
                    error = _error(req)
                    if isinstance(error, EndpointError):
                        strikes[e] += 1
                        tries[i] += 1
                        last_failed[i] = e
                        if strikes[e] >= SET_ASIDE_AFTER and e not in aside:
                            aside[e] = str(error)
                            self.set_aside(self.endpoints[e])
                            print(f"lmnb.map: {self.endpoints[e].url} set aside for the rest of the job "
                                  f"after {strikes[e]} failures in a row: {error}")  # fmt: skip
                        # this endpoint already retried it with backoff: again only elsewhere, or
                        # when the connection dropped mid-reply (no retry has been made for that)
                        others = any(k not in aside and k != e for k in range(n))
                        if tries[i] < ROW_TRIES and (others or error.streamed):
                            del in_flight[i]
                            load[e] -= 1
                            queue.appendleft(i)  # first in line again: results stay in input order anyway
                            retried += 1
                            continue
                    elif error is None:
                        strikes[e] = 0
                    out[i] = req
                    del in_flight[i]
                    load[e] -= 1
                    finished(i, req)
        except KeyboardInterrupt:
            for req, _ in in_flight.values():
                req.cancel()
            out.update({i: req for i, (req, _) in in_flight.items()})
            return out, True, {"retried": retried, "endpoints_set_aside": len(aside)}
        return out, False, {"retried": retried, "endpoints_set_aside": len(aside)}

    def __repr__(self) -> str:
        return f"<lmnb farm of {len(self.endpoints)}: {self.url} model={self.model!r}>"


def _error(req: Any) -> Optional[BaseException]:
    """The error a finished request ended with (``None``: it has a result)."""
    try:
        req.result(timeout=0)
    except TimeoutError:
        return None
    except BaseException as e:  # noqa: BLE001 - whatever it was, it is the row's outcome
        return e
    return None
