"""What callers hold while the engine works for them: a ``Request`` handle that streams text.

A request is submitted from any thread; the worker pushes events into the handle's queue. The
caller iterates the handle for text deltas (``events()`` also gives prompt-processing progress),
or calls ``result()``. ``cancel()`` is safe from any
thread. Nothing here knows how many sequences the worker decodes per step.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator, Optional, Union

from ..errors import LmnbError
from ..types import Completion, Message, SamplingParams

_ids = itertools.count(1)


@dataclass
class GenerationSpec:
    """What to generate: either chat ``messages`` (rendered with the model's template) or a raw ``prompt``."""

    messages: Optional[list[Message]] = None
    prompt: Optional[Union[str, list[int]]] = None
    params: SamplingParams = field(default_factory=SamplingParams)
    grammar: Optional[str] = None  # GBNF text constraining the reply (JSON mode, JSON schema)
    logprobs: Optional[int] = None  # None: off; k: each token's logprob plus the k most likely alternatives
    tags: dict = field(default_factory=dict)  # caller's bookkeeping (conversation name, source...)


class Request:
    """A handle on one generation: iterate it for text deltas, or call ``result()``."""

    def __init__(self, spec: GenerationSpec) -> None:
        self.id = f"req-{next(_ids)}"
        self.spec = spec
        self.submitted = time.perf_counter()
        self._events: "queue.SimpleQueue[tuple[str, object]]" = queue.SimpleQueue()
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._result: Optional[Completion] = None
        self._error: Optional[BaseException] = None
        self._wakers: list = []
        # with spec.logprobs set: one OpenAI-style entry per generated token, appended by the worker
        # before the text that contains the token is emitted
        self.logprobs: list[dict] = []
        # (prompt tokens evaluated, prompt tokens) while a long prompt is read; None for short ones
        self.prompt_progress: Optional[tuple[int, int]] = None
        self.prompt_done = threading.Event()  # set once the prompt is in the KV cache

    # --- consumer side ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        for kind, payload in self.events():
            if kind == "delta":
                yield payload  # type: ignore[misc]

    def events(self) -> Iterator[tuple[str, object]]:
        """``("delta", text)`` and ``("progress", (evaluated, total))`` events until the request ends.

        Progress events come only for prompts that take several decode steps to read, so a
        caller can show "reading the prompt… 40%" before the first token. Raises the request's error.
        """
        while True:
            try:
                # A timeout, so the main thread wakes up to notice Ctrl-C / a kernel interrupt.
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            if _text_or_end(event) is _END:
                return
            yield event

    async def aiter(self) -> "AsyncIterator[str]":
        """Text deltas for asyncio code (the server): waits without blocking the event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        waker = lambda: loop.call_soon_threadsafe(ready.set)  # noqa: E731
        self._wakers.append(waker)  # registered before draining, so no wake-up is lost
        try:
            while True:
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    await ready.wait()
                    ready.clear()
                    continue
                text = _text_or_end(event)
                if text is _END:
                    return
                if text is not _SKIP:
                    yield text  # type: ignore[misc]
        finally:
            self._wakers.remove(waker)

    def result(self, timeout: Optional[float] = None) -> Completion:
        """Wait for the final ``Completion`` (the text generated so far, if cancelled)."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._done.wait(0.2):
            if deadline is not None and time.perf_counter() > deadline:
                raise TimeoutError(f"{self.id} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        """Stop generating as soon as possible; the partial text is kept in the result."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def __repr__(self) -> str:
        state = "done" if self.done else ("cancelling" if self.cancelled else "running")
        return f"<Request {self.id} {state}>"

    # --- worker side ------------------------------------------------------------------------
    def _put(self, event: tuple) -> None:
        self._events.put(event)
        for wake in list(self._wakers):
            try:
                wake()
            except RuntimeError:  # the waiting event loop has closed
                pass

    def _emit(self, text: str) -> None:
        self._put(("delta", text))

    def _progress(self, done: int, total: int) -> None:
        self.prompt_progress = (done, total)
        self._put(("progress", (done, total)))

    def _deliver(self, result: Completion, listeners: list) -> None:
        """Finish with ``result`` after the backend's listeners have seen it.

        Listeners run first, so that e.g. a conversation already holds this reply when the
        caller sends the next message; a failing listener never keeps the result from the caller.
        """
        for listener in list(listeners):
            try:
                listener(self, result)
            except Exception:
                pass
        self._finish(result)

    def _finish(self, result: Completion) -> None:
        self.prompt_done.set()
        self._result = result
        self._done.set()
        self._put(("done", result))

    def _fail(self, error: BaseException) -> None:
        self.prompt_done.set()
        if not isinstance(error, LmnbError) and not isinstance(error, ValueError):
            error = LmnbError(f"generation failed: {error}")
        self._error = error
        self._done.set()
        self._put(("error", error))


_END = object()
_SKIP = object()


def _text_or_end(event: tuple) -> object:
    """A delta's text, ``_SKIP`` for progress, ``_END`` when the request is done; raises its error."""
    kind, payload = event
    if kind == "delta":
        return payload
    if kind == "progress":
        return _SKIP
    if kind == "error":
        raise payload  # type: ignore[misc]
    return _END
