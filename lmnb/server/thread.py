"""The server's thread: its own event loop, and its logs kept for ``%lm log`` instead of printed.

In a kernel, ``sys.stderr`` is the output of whatever cell runs (or last ran). With no handler
configured, Python prints every uvicorn or asyncio warning there (``logging.lastResort``): a red
block under an unrelated cell, e.g. uvicorn's "Cancel 2 running task(s), timeout graceful
shutdown exceeded" and an "Exception in ASGI application" traceback per request at Stop, or
asyncio's "Task was destroyed but it is pending!". Here those lines go to lmnb's log buffer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from typing import Any, Callable, Coroutine

# lmnb's log buffer takes llama.cpp's level numbers: 2 info, 3 warn, 4 error
_LEVELS = ((logging.ERROR, 4), (logging.WARNING, 3), (0, 2))
_LOGGERS = ("uvicorn", "lmnb.server")  # "uvicorn" covers uvicorn.error and uvicorn.access
_installed = False
_lock = threading.Lock()


def _keep(level: int, text: str) -> None:
    from ..engine.logs import LOGS

    code = next(c for floor, c in _LEVELS if level >= floor)
    LOGS.write(code, f"[server] {text.rstrip()}\n")


class _ToLogBuffer(logging.Handler):
    """A logging handler that appends to lmnb's log buffer (``%lm log``, the Logs pane)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            _keep(record.levelno, text)
        except Exception:  # a log line must never break the server
            pass


def route_logs() -> None:
    """Give the server's loggers a handler, once: their lines go to the log buffer, and
    ``logging.lastResort`` no longer prints them into a cell. A handler the user configured
    (on the root logger) still gets them too."""
    global _installed
    with _lock:
        if _installed:
            return
        handler = _ToLogBuffer(level=logging.INFO)
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.INFO)
        _installed = True


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The server loop's exception handler (asyncio's default one logs to stderr)."""
    text = str(context.get("message") or "error in the server's event loop")
    for key in ("task", "future", "handle"):
        if key in context:
            text += f"\n{key}: {context[key]!r}"
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        text += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    _keep(logging.ERROR, text)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the coroutine ``main()`` makes (uvicorn's ``Server.serve``) on a new event loop of this
    thread, like ``asyncio.run``, with the loop's errors kept in the log buffer; at the end, what
    is left on the loop is cancelled and awaited, so no task is left to be destroyed pending."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_loop_error)
    try:
        loop.run_until_complete(main())
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
