"""The OpenAI-compatible HTTP API (FastAPI), serving the model the kernel has loaded.

Every generation is submitted to the one shared ``Engine``, so HTTP requests queue fairly with
notebook cells and share the model (no second copy). Handlers never block the event loop: they
await ``Request.aiter()``, which the engine's worker wakes. A client that disconnects cancels its
request, so the engine moves on to the next one at once.

Endpoints (``routes.py``): ``/v1/models``, ``/v1/models/{id}``, ``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings`` (also without ``/v1``), ``/health``, ``/metrics``,
``/tokenize`` and ``/detokenize``; ``/v1/rerank`` in ``rerank.py``. Errors always have OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` (``errors.py``).
"""

from __future__ import annotations

import time
import weakref
from typing import Optional, Sequence

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..engine import Engine
from .convert import version
from .errors import APIError, as_api_error, error_body, install_handlers  # noqa: F401 - the names app.py had
from .guard import HostOriginGuard
from .lora import lora_routes
from .rerank import rerank_routes
from .responses import responses_routes
from .routes import extra, openai_routes
from .stats import ServerStats

_as_api_error = as_api_error


def create_app(
    engine: Optional[Engine] = None,
    api_key: Optional[str] = None,
    cors: Optional[list[str]] = None,
    stats: Optional[ServerStats] = None,
    allowed_hosts: Optional[Sequence[str]] = None,
    host: str = "127.0.0.1",
) -> FastAPI:
    """Build the FastAPI app.

    Args:
        engine: the one engine to serve; default: every model loaded in the session (the
            registry), requests choosing by their ``model`` field, loading on demand with
            ``LM.jit_load``.
        api_key: when set, every endpoint but ``/health`` requires ``Authorization: Bearer KEY``.
        cors: browser origins allowed to call the API (``"*"``: any).
        stats: where request counts go (default: a new ``ServerStats``).
        allowed_hosts: names besides this machine's (localhost, loopback addresses) that the
            ``Host`` header may carry; ``"*"`` accepts any (turns DNS-rebinding protection off).
            Starlette's ``TestClient`` sends ``Host: testserver``: allow it to test with one.
        host: the address the server binds; when it is not a loopback address, requests addressed
            to any IP address (and to ``host`` itself) are accepted too.

    Returns:
        The ASGI app: stats (outermost), then the Host/Origin guard, then CORS, then the routes.
    """
    registry = None
    if engine is None:
        from ..api import get_engine, registry as session_registry

        engine, registry = get_engine(), session_registry()
    stats = stats or ServerStats()
    app = FastAPI(
        title="lmnb",
        summary="OpenAI-compatible API for the model loaded in a Jupyter kernel (llama.cpp).",
        version=version(),
    )
    # what the routes' dependencies read (routes.get_engine, authenticate, get_stats)
    app.state.engine = engine  # the default model's (health, metrics, tokens, embeddings)
    app.state.registry = registry  # None: serve `engine` alone
    app.state.api_key = api_key or None
    app.state.stats = stats
    app.state.requests = weakref.WeakSet()  # the engine requests of this app's clients (Server.stop cancels them)
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["*"], allow_headers=["*"])
    # The last added runs first: stats (counts refused requests too), the guard, CORS, the routes.
    app.add_middleware(HostOriginGuard, allowed_hosts=list(allowed_hosts or ()), cors=list(cors or ()), host=host,
                       error_body=error_body)
    app.add_middleware(_StatsMiddleware, stats=stats)
    install_handlers(app)
    for router in (openai_routes, responses_routes, rerank_routes):
        app.include_router(router, prefix="/v1")
        # the same routes without /v1, for clients configured with the bare server URL (llama-server
        # and LM Studio answer there too); kept out of the schema, which documents each route once
        app.include_router(router, include_in_schema=False)
    app.include_router(extra)
    app.include_router(lora_routes)
    return app


class _StatsMiddleware:
    """Counts requests by path and status and keeps the last few (pure ASGI: streaming-safe)."""

    def __init__(self, app: ASGIApp, stats: ServerStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [0]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.stats.in_flight += 1
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.stats.in_flight -= 1
            self.stats.record(scope["method"], scope["path"], status[0] or 499, time.perf_counter() - t0)
