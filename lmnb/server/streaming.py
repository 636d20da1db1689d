"""Waiting on engine requests from the event loop: a whole reply, or SSE chunks as it is written.

Both stop the generation when the client goes away. One chunk generator serves chat and text
completions; ``Chunks`` knows the two wire shapes (``chat.completion.chunk`` with ``delta`` and
``text_completion`` with ``text``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Optional, TypeVar

from fastapi import Request
from fastapi.responses import Response

from ..engine import Request as EngineRequest
from ..tools.stream import CallDelta
from ..types import Completion
from .convert import finish, legacy_logprobs, usage
from .errors import as_api_error, cancelled_in_kernel, error_body

T = TypeVar("T")


async def until_disconnect(request: Request, req: EngineRequest, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; cancel the engine request if the client goes away meanwhile."""
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                req.cancel()
    finally:
        if not task.done():
            req.cancel()
            task.cancel()


async def collect(req: EngineRequest, request: Request, prompt_field: str = "messages") -> Completion:
    """The finished ``Completion`` of ``req`` (an ``APIError`` if it failed or was cancelled in the kernel)."""

    async def drain() -> Completion:
        async for _ in req.aiter():
            pass
        return req.result()

    try:
        res = await until_disconnect(request, req, drain())
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except BaseException as e:
        raise as_api_error(e, prompt_field) from None
    if res.finish_reason == "cancelled":
        raise cancelled_in_kernel()
    return res


@dataclass
class Chunks:
    """The SSE chunk shape of one streamed reply: chat (``delta``) or text completion (``text``)."""

    id: str
    created: int
    model: str
    fingerprint: str
    chat: bool
    echo: str = ""  # text completions: the prompt, sent first when echo=true

    def envelope(self, choices: list[dict], **extra: object) -> str:
        return json.dumps({
            "id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created, "model": self.model, "system_fingerprint": self.fingerprint,
            "choices": choices, **extra,
        })

    def text(self, text: str, finish: Optional[str] = None, logprobs: Optional[dict] = None,
             role: bool = False) -> str:
        if self.chat:
            if role:
                delta: dict = {"role": "assistant", "content": text}
            else:
                delta = {} if finish else {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return self.envelope([choice])

    def reasoning(self, text: str) -> str:
        """A piece of a reasoning model's thinking (llama-server's and DeepSeek's ``reasoning_content``)."""
        return self.envelope([{"index": 0, "delta": {"reasoning_content": text}, "logprobs": None,
                               "finish_reason": None}])  # fmt: skip

    def tool_call(self, piece: CallDelta) -> str:
        """A piece of a call as a ``delta.tool_calls`` chunk: the first with its id and name, then
        the arguments as they are written (clients join them by index)."""
        return self.envelope([{"index": 0, "delta": {"tool_calls": [piece.openai()]}, "logprobs": None,
                               "finish_reason": None}])  # fmt: skip

    def progress(self, req: EngineRequest, done: int, total: int) -> str:
        """How far the prompt has been read (llama-server's ``prompt_progress``: the share read
        is processed / total; cache: tokens taken from the KV cache without reading them)."""
        started = req.admitted or req.submitted
        elapsed = int((time.perf_counter() - started) * 1000)
        choice: dict = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": None} if self.chat else \
            {"index": 0, "text": "", "logprobs": None, "finish_reason": None}  # fmt: skip
        return self.envelope([choice], prompt_progress={"total": total, "cache": req.prompt_cached,
                                                          "processed": done, "time_ms": elapsed})  # fmt: skip

    def logprobs(self, entries: list[dict], offset: int) -> dict:
        return {"content": entries} if self.chat else legacy_logprobs(entries, offset)


Event = tuple[str, object]


async def chunks(fmt: Chunks, req: EngineRequest, first: Optional[Event], it: AsyncIterator[Event],
                 include_usage: bool, progress: bool = False) -> AsyncIterator[str]:
    """The JSON payloads of the SSE events of one reply: an opening chunk (chat: the role; text:
    the echoed prompt), with ``progress`` the prompt's reading progress (the last one complete)
    before the first token, one chunk per piece of text (a reasoning model's thinking as
    ``delta.reasoning_content``), the tool calls as they are written, the finish reason, then the usage if asked."""
    want_lp = req.spec.logprobs is not None
    if fmt.chat:
        yield fmt.text("", role=True)
    elif fmt.echo:
        yield fmt.text(fmt.echo)
    offset = len(fmt.echo)
    read = not progress  # the prompt's complete progress was sent (or is not wanted)
    async for kind, text, entries in _deltas(req, first, it):
        if kind == "progress":
            done, total = text  # type: ignore[misc]
            read = done >= total
            yield fmt.progress(req, done, total)
            continue
        if not read:  # short prompts are read in one step, with no progress event of their own
            read = True
            yield fmt.progress(req, req.prompt_total, req.prompt_total)
        if kind == "reasoning":
            yield fmt.reasoning(text)
            continue
        if kind == "tool_call":
            yield fmt.tool_call(text)  # type: ignore[arg-type]
            continue
        yield fmt.text(text, logprobs=fmt.logprobs(entries, offset) if want_lp else None)
        offset += sum(len(e["token"]) for e in entries)
    res = req.result()
    if res.finish_reason == "cancelled":
        raise cancelled_in_kernel()
    yield fmt.text("", finish=finish(res))
    if include_usage:
        yield fmt.envelope([], usage=usage([res]))


async def _deltas(req: EngineRequest, first: Optional[Event], it: AsyncIterator[Event]) -> AsyncIterator[tuple[str, str, list]]:
    """(kind, text, logprob entries) of the text events: every entry is sent once, with or before
    its answer text (the thinking's tokens go with the first piece of answer)."""
    sent = 0

    def take() -> list:
        nonlocal sent
        entries = req.logprobs[sent:]
        sent += len(entries)
        return entries

    async def events() -> AsyncIterator[Event]:
        if first is not None:
            yield first
        async for event in it:
            yield event

    async for kind, payload in events():
        if kind == "delta":
            yield "delta", payload, take()  # type: ignore[misc]
        elif kind in ("reasoning", "tool_call", "progress"):
            yield kind, payload, []  # type: ignore[misc]
    if req.logprobs[sent:]:
        yield "delta", "", take()


async def stream(req: EngineRequest, request: Request, fmt: Chunks, include_usage: bool,
                 prompt_field: str, progress: bool = False) -> Response:
    """An SSE response. The first text is awaited before answering, so an error that happens
    before generation starts (e.g. the prompt does not fit) is still a plain HTTP error."""
    from sse_starlette.sse import EventSourceResponse

    it = req.aevents(progress=progress)
    try:
        first: Optional[Event] = await until_disconnect(request, req, it.__anext__())
    except StopAsyncIteration:
        first = None
    except BaseException as e:
        req.cancel()
        if isinstance(e, asyncio.CancelledError):
            raise
        raise as_api_error(e, prompt_field) from None

    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in chunks(fmt, req, first, it, include_usage, progress):
                yield chunk
            yield "[DONE]"
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            err = as_api_error(e)
            yield json.dumps(error_body(err.status, err.message, err.param, err.code))
        finally:
            req.cancel()  # a no-op once finished; stops the generation when the client went away

    return EventSourceResponse(events(), sep="\n", ping=15)
