"""What callers hold while the engine works for them: a ``Request`` handle that streams text.

A request is submitted from any thread; the worker pushes events into the handle's stream
(``stream.py``). The caller iterates the handle for text deltas (``events()`` also gives
prompt-processing progress), or calls ``result()``. ``cancel()`` is safe from any thread.
Nothing here knows how many sequences the worker decodes per step.

What is done *with* a reply is attached to the request when it is made, and never runs on the
decode thread: output ``Stage``s see every event as it streams and may rewrite the final
``Completion`` (a schema parser; next, a reasoning-block splitter or a tool-call parser), and
``on_done`` callbacks run once the result is final (a conversation appends the turn, the history
records the row). Both run on one "lmnb-replies" thread, in order per request, before
``result()`` returns and before the caller's iteration ends, so a conversation already holds a
reply when its caller sends the next message.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Optional, Union

from ..errors import LmnbError
from ..types import Completion, Message, SamplingParams
from .stream import EventStream

_ids = itertools.count(1)
_log = logging.getLogger("lmnb")

Event = tuple[str, object]


class Stage:
    """One step of a request's output chain; subclass and override what you need.

    ``on_event`` sees each event (``("delta", text)``, ``("progress", (done, total))``) in
    order and returns the events to pass on: it may hold text back, rewrite it, or turn it into
    other kinds of event. ``on_result`` sees the final ``Completion`` and returns it (changed or
    not). Stages run on the replies thread, never on the decode thread; an exception in one
    fails the request with that error.
    """

    def on_event(self, event: Event) -> Iterable[Event]:
        return (event,)

    def on_end(self, result: Completion) -> Iterable[Event]:
        """Events to send once the reply is complete, before ``on_result`` (e.g. text held back
        in case it began a tool call, now known not to). They go through the later stages."""
        return ()

    def on_result(self, result: Completion) -> Completion:
        return result


class _Replies:
    """The one thread that runs output stages and callbacks, in the order they were posted."""

    def __init__(self) -> None:
        self._queue: "queue.SimpleQueue[tuple[Callable, tuple]]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def post(self, fn: Callable, *args: object) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="lmnb-replies", daemon=True)
                    self._thread.start()
        self._queue.put((fn, args))

    def _run(self) -> None:
        while True:
            fn, args = self._queue.get()
            try:
                fn(*args)
            except BaseException:  # a bug in a stage must not stop every later reply
                _log.exception("lmnb: reply handling failed")


REPLIES = _Replies()


@dataclass
class GenerationSpec:
    """What to generate: either chat ``messages`` (rendered with the model's template) or a raw ``prompt``."""

    messages: Optional[list[Message]] = None
    prompt: Optional[Union[str, list[int]]] = None
    params: SamplingParams = field(default_factory=SamplingParams)
    grammar: Optional[str] = None  # GBNF text constraining the reply (JSON mode, JSON schema)
    logprobs: Optional[int] = None  # None: off; k: each token's logprob plus the k most likely alternatives
    # tools as the chat template takes them (OpenAI's ``{"type": "function", "function": {...}}``), for
    # templates that render tools themselves; the engine only passes them to the template
    tools: Optional[list[dict]] = None
    keep_special: bool = False  # control tokens in the reply by their text (tool-call and reasoning markers)
    template_kwargs: Optional[dict] = None  # extra variables for the chat template (enable_thinking=False)
    # a reasoning model's (open, close) thinking markers, for params.reasoning_budget; think_inside:
    # the template opened the thinking, so the reply starts inside it
    think_markers: Optional[tuple[str, str]] = None
    think_inside: bool = False
    # written by the engine as it renders ``messages``: how many its ``context_overflow`` policy left
    # out to fit the context (``Completion.dropped_messages``); the messages themselves are not changed
    dropped_messages: int = 0
    # LoRA adapters: None, the model's adapters at their session scales; else a name, names,
    # (name, scale) pairs or {name: scale} (``engine.adapters.parse_choice``); [] the base alone
    lora: Any = None


class Request:
    """A handle on one generation: iterate it for text deltas, or call ``result()``.

    Args:
        spec: what to generate.
        stages: output stages, applied in order to the streamed events and the final result.
        on_done: callbacks given the final ``Completion`` (after the stages) before the request
            counts as done. They run on the replies thread: they must not wait for another request.
        model: the name of the model that serves the request (set by the backend at submit).
    """

    def __init__(self, spec: GenerationSpec, *, stages: Iterable[Stage] = (),
                 on_done: Iterable[Callable[[Completion], None]] = ()) -> None:  # fmt: skip
        self.id = f"req-{next(_ids)}"
        self.spec = spec
        self.stages: list[Stage] = list(stages)
        self.on_done: list[Callable[[Completion], None]] = list(on_done)
        self.model_path: Optional[str] = None  # the file of the model that serves it (None: remote)
        self.submitted = time.perf_counter()
        self._events = EventStream()
        self._shown = False  # an event a reader shows has been put (the first is never held back)
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._result: Optional[Completion] = None
        self._error: Optional[BaseException] = None
        # with spec.logprobs set: one OpenAI-style entry per generated token, appended by the worker
        # before the text that contains the token is emitted
        self.logprobs: list[dict] = []
        # (prompt tokens evaluated, prompt tokens) while a long prompt is read; None for short ones
        self.prompt_progress: Optional[tuple[int, int]] = None
        self.prompt_total = 0  # prompt tokens, and of them found in the KV cache, when admitted
        self.prompt_cached = 0
        self.admitted: Optional[float] = None  # perf_counter() when the worker started reading its prompt
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
        """Text deltas for asyncio code: waits without blocking the event loop."""
        async for kind, payload in self.aevents():
            if kind == "delta":
                yield payload  # type: ignore[misc]

    async def aevents(self, progress: bool = False) -> "AsyncIterator[tuple[str, object]]":
        """``(kind, payload)`` events for asyncio code (the server): text deltas and what stages
        send (``reasoning`` text, ``tool_calls``), and with ``progress`` the prompt's ``("progress",
        (evaluated, total))``. Raises the request's error."""
        from contextlib import aclosing

        async with aclosing(self._events.aiter()) as events:  # its wake-up goes when this ends
            async for event in events:
                if _text_or_end(event) is _END:
                    return
                if progress or event[0] != "progress":
                    yield event

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

    # --- producer side (the backend's worker) --------------------------------------------------
    # With no stages, deltas go straight to the caller; everything else is posted to the replies
    # thread, so the worker only hands over and goes back to decoding.
    def emit(self, text: str) -> None:
        """A piece of the reply's text."""
        self._produce(("delta", text))

    def progress(self, done: int, total: int) -> None:
        """Prompt evaluation progress, for prompts that take several steps."""
        self.prompt_progress = (done, total)
        self._produce(("progress", (done, total)))

    def deliver(self, result: Completion) -> None:
        """The final result: stages and ``on_done`` callbacks run, then the request is done."""
        result.dropped_messages = self.spec.dropped_messages  # known since the prompt was rendered
        REPLIES.post(self._complete, result)

    def fail(self, error: BaseException) -> None:
        """End with ``error`` (after the events already produced)."""
        self.prompt_done.set()
        if self.stages:
            REPLIES.post(self._end_with_error, error)
        else:
            self._end_with_error(error)

    # --- internals ------------------------------------------------------------------------
    def _produce(self, event: Event) -> None:
        if self.stages:
            REPLIES.post(self._staged, event)
        else:
            self._put(event)

    def _staged(self, event: Event, start: int = 0) -> None:
        events: Iterable[Event] = (event,)
        for stage in self.stages[start:]:
            events = [out for e in events for out in stage.on_event(e)]
        for e in events:
            self._put(e)

    def _complete(self, result: Completion) -> None:
        try:
            for i, stage in enumerate(self.stages):
                for event in stage.on_end(result):
                    self._staged(event, i + 1)
            for stage in self.stages:
                result = stage.on_result(result)
        except Exception as e:
            self._end_with_error(e)
            return
        for fn in self.on_done:
            try:
                fn(result)
            except Exception:  # the caller still gets its result; the bug is logged, not lost
                _log.exception("lmnb: an on_done callback of %s failed", self.id)
        self.prompt_done.set()
        self._result = result
        self._done.set()
        self._put(("done", result))

    def _end_with_error(self, error: BaseException) -> None:
        self.prompt_done.set()
        if not isinstance(error, (LmnbError, ValueError)):
            wrapped = LmnbError(f"generation failed: {error}")
            wrapped.__cause__ = error
            error = wrapped
        self._error = error
        self._done.set()
        self._put(("error", error))

    def _put(self, event: Event) -> None:
        # The first thing a reader shows (text, reasoning, a tool call) and the end are handed over
        # at once; later events may wait for the stream's next wake-up (``stream.py``), <= 30 ms.
        kind = event[0]
        first = not self._shown and kind != "progress"
        self._shown = self._shown or first
        self._events.put(event, urgent=first or kind in ("done", "error"))


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
    if kind == "done":
        return _END
    return _SKIP  # other kinds a stage sends (tool calls, reasoning) are for callers of events()
