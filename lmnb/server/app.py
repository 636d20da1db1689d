"""The OpenAI-compatible HTTP API (FastAPI), serving the model the kernel has loaded.

Every generation is submitted to the one shared ``Engine``, so HTTP requests queue fairly with
notebook cells and share the model (no second copy). Handlers never block the event loop: they
await ``Request.aiter()``, which the engine's worker wakes. A client that disconnects cancels its
request, so the engine moves on to the next one at once.

Errors always have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
import uuid
from typing import Any, AsyncIterator, Optional, Sequence

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ContextOverflow, LmnbError, NoModelLoaded
from ..types import Completion, SamplingParams
from . import schemas as S
from .guard import HostOriginGuard, quote
from .stats import ServerStats

log = logging.getLogger("lmnb.server")

_ERRORS = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
           404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
           503: "server_error", 500: "server_error"}
_ERROR_DOCS = {
    400: {"model": S.ErrorResponse, "description": "Invalid request (bad value, prompt too long for the context)"},
    401: {"model": S.ErrorResponse, "description": "Missing or wrong API key"},
    404: {"model": S.ErrorResponse, "description": "Unknown model"},
    503: {"model": S.ErrorResponse, "description": "No model loaded"},
}


class APIError(Exception):
    """An error to send to the client in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": _ERRORS.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def _error_response(e: APIError) -> JSONResponse:
    return JSONResponse(error_body(e.status, e.message, e.param, e.code), status_code=e.status)


def _as_api_error(e: BaseException, prompt_field: str = "messages") -> APIError:
    """Map engine exceptions to HTTP errors: nothing a client does may produce a 500."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, NoModelLoaded):
        return APIError(503, "No model is loaded in the kernel. Load one with `%lm load` (or lmnb.load()).",
                        code="model_not_loaded")
    if isinstance(e, ContextOverflow):
        return APIError(400, str(e), param=prompt_field, code="context_length_exceeded")
    if isinstance(e, (ValueError, LmnbError)):
        return APIError(400, str(e))
    log.exception("internal error")
    return APIError(500, f"internal error ({type(e).__name__}); see the kernel's log")


def _streaming_docs(description: str) -> dict:
    """OpenAPI responses of a route that answers JSON, or SSE when ``stream=true``."""
    return {**_ERROR_DOCS, 200: {"content": {"text/event-stream": {}}, "description": description}}


def create_app(
    engine: Any = None,
    api_key: Optional[str] = None,
    cors: Optional[list[str]] = None,
    stats: Optional[ServerStats] = None,
    allowed_hosts: Optional[Sequence[str]] = None,
    host: str = "127.0.0.1",
) -> FastAPI:
    """Build the FastAPI app.

    Args:
        engine: the engine that generates (default: the session's shared engine).
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
    if engine is None:
        from ..api import get_engine

        engine = get_engine()
    stats = stats or ServerStats()
    app = FastAPI(
        title="lmnb",
        summary="OpenAI-compatible API for the model loaded in a Jupyter kernel (llama.cpp).",
        version=_version(),
    )
    app.state.engine = engine
    app.state.stats = stats
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["*"], allow_headers=["*"])
    # The last added runs first: stats (counts refused requests too), the guard, CORS, the routes.
    app.add_middleware(HostOriginGuard, allowed_hosts=list(allowed_hosts or ()), cors=list(cors or ()), host=host,
                       error_body=error_body)
    app.add_middleware(_StatsMiddleware, stats=stats)

    # ---- errors ------------------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError) -> JSONResponse:
        return _error_response(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errs = e.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        content_type = request.headers.get("content-type", "")
        if tuple(first.get("loc", ())) == ("body",) and not _is_json_type(content_type):
            # FastAPI reads only JSON bodies as JSON: a form or text body arrives as bytes
            got = f"Content-Type {quote(content_type)}" if content_type else "no Content-Type"
            return _error_response(APIError(400, f"The request body must be JSON sent with 'Content-Type: "
                                                 f"application/json' (this request has {got})."))
        # drop "body" and pydantic's union-branch tags ("str", "list[str]", "TextPart") from the path
        loc = [str(x) for x in first.get("loc", ()) if x != "body" and not _is_type_tag(x)]
        if first.get("type") == "json_invalid":
            msg = f"The request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
            return _error_response(APIError(400, msg))
        param = ".".join(loc) or None
        more = f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
        return _error_response(APIError(400, f"{param or 'body'}: {first['msg']}{more}", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error_response(APIError(e.status_code, str(e.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        return _error_response(_as_api_error(e))

    def check_key(request: Request) -> None:
        if not api_key:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if not given:
            raise APIError(401, "Missing API key: send 'Authorization: Bearer <key>'.", code="invalid_api_key")
        import hmac

        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    secured = [Depends(check_key)]

    # ---- models ------------------------------------------------------------------------------
    def loaded_info():
        info = engine.info
        if info is None:
            raise _as_api_error(NoModelLoaded())
        return info

    def _names(info: Any, name: str) -> bool:
        if name in (info.name, os.path.basename(info.path), info.path):
            return True
        try:
            from ..library import resolve

            return os.path.abspath(resolve(name)) == info.path
        except Exception:
            return False

    def check_model(name: Optional[str]):
        info = loaded_info()
        if not name or _names(info, name):
            return info
        raise APIError(
            404,
            f"The model {name!r} is not loaded; this server serves {info.name!r} (see GET /v1/models). "
            f"Load another model in the notebook with `%lm load`.",
            param="model",
            code="model_not_found",
        )

    def embedding_model(name: Optional[str]) -> tuple[str, Any]:
        """Which model embeds: the one named, else the embedding model, else the chat model."""
        emb, chat = engine.embedder_info, engine.info
        if emb is not None and (not name or _names(emb, name)):
            return "embedder", emb
        if not name or emb is None:
            return "chat", check_model(name)
        if chat is not None and _names(chat, name):
            return "chat", chat
        served = " and ".join(repr(m.name) for m in (emb, chat) if m is not None)
        raise APIError(404, f"The model {name!r} is not loaded; embeddings come from {served} (see GET /v1/models).",
                       param="model", code="model_not_found")  # fmt: skip

    @app.get("/v1/models", response_model=S.ModelList, dependencies=secured, responses=_ERROR_DOCS)
    async def list_models() -> JSONResponse:
        from ..library import local_models

        info, emb = engine.info, engine.embedder_info
        data = []
        for m in (info, emb):
            if m is not None:
                data.append(_card(m.name, m.path, True))
        try:
            others = await asyncio.to_thread(local_models, ())
        except Exception:
            others = []
        for m in others:
            if os.path.abspath(m.path) not in {x.path for x in (info, emb) if x is not None}:
                data.append(_card(m.name, m.path, False))
        return JSONResponse({"object": "list", "data": data})

    @app.get("/v1/models/{model_id:path}", response_model=S.ModelCard, dependencies=secured, responses=_ERROR_DOCS)
    async def get_model(model_id: str) -> JSONResponse:
        info = check_model(model_id)
        return JSONResponse(_card(info.name, info.path, True))

    # ---- health and metrics -----------------------------------------------------------------
    @app.get("/health", response_model=S.Health, responses={503: {"model": S.Health}})
    async def health() -> JSONResponse:
        info = engine.info
        if info is None:
            return JSONResponse({"status": "no model loaded", "model": None}, status_code=503)
        return JSONResponse({"status": "ok", "model": info.name})

    @app.get("/metrics", dependencies=secured, response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    async def metrics() -> Response:
        from .metrics import render

        body, content_type = render(engine, stats)
        return Response(body, media_type=content_type)

    # ---- generation --------------------------------------------------------------------------
    @app.post("/v1/chat/completions", response_model=S.ChatCompletion, dependencies=secured,
              responses=_streaming_docs("A chat completion, or SSE chunks when stream=true"))
    async def chat_completions(body: S.ChatCompletionRequest, request: Request):
        from ..engine import GenerationSpec

        info = check_model(body.model)
        if body.tools:
            raise APIError(400, "Tool calling is not supported yet by lmnb's server.", param="tools")
        messages = [_message(m, i) for i, m in enumerate(body.messages)]
        params = _sampling(body, body.max_completion_tokens or body.max_tokens)
        grammar = _grammar(body.response_format)
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs=true.", param="top_logprobs")
        specs = [
            GenerationSpec(messages=messages, params=p, grammar=grammar, logprobs=logprobs, tags={"kind": "server"})
            for p in _n_params(params, body.n or 1)
        ]
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        out = await _run(engine, specs, body, request, _chat_chunks(cid, created, info.name), "messages")
        if isinstance(out, Response):
            return out
        results = out
        choices = []
        for i, res in enumerate(results):
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": res.text},
                "finish_reason": _finish(res),
                "logprobs": {"content": res.logprobs} if res.logprobs is not None else None,
            }
            choices.append(choice)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": info.name,
            "choices": choices, "usage": _usage(results), "system_fingerprint": _fingerprint(info),
            "timings": _timings(results[0]),
        })

    @app.post("/v1/completions", response_model=S.TextCompletion, dependencies=secured,
              responses=_streaming_docs("A completion, or SSE chunks when stream=true"))
    async def completions(body: S.CompletionRequest, request: Request):
        from ..engine import GenerationSpec

        info = check_model(body.model)
        if body.suffix:
            raise APIError(400, "suffix (fill-in-the-middle) is not supported.", param="suffix")
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if any(not p for p in prompts):
            raise APIError(400, "prompt must not be empty.", param="prompt")
        params = _sampling(body, body.max_tokens)
        specs = [
            GenerationSpec(prompt=prompt, params=p, logprobs=body.logprobs, tags={"kind": "server"})
            for prompt in prompts
            for p in _n_params(params, body.n or 1)
        ]
        cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        echo = prompts[0] if body.echo else ""
        out = await _run(engine, specs, body, request, _text_chunks(cid, created, info.name, echo), "prompt")
        if isinstance(out, Response):
            return out
        results = out
        n = body.n or 1
        choices = []
        for i, res in enumerate(results):
            prefix = prompts[i // n] if body.echo else ""
            choices.append({
                "index": i, "text": prefix + res.text, "finish_reason": _finish(res),
                "logprobs": _legacy_logprobs(res.logprobs, len(prefix)) if res.logprobs is not None else None,
            })
        return JSONResponse({"id": cid, "object": "text_completion", "created": created, "model": info.name,
                             "choices": choices, "usage": _usage(results)})

    @app.post("/v1/embeddings", response_model=S.EmbeddingList, dependencies=secured, responses=_ERROR_DOCS)
    async def embeddings(body: S.EmbeddingRequest) -> JSONResponse:
        source, info = embedding_model(body.model)
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if body.dimensions is not None:
            raise APIError(400, "dimensions is not supported: the model's embedding size is fixed.",
                           param="dimensions")
        try:
            vectors, n_tokens = await asyncio.to_thread(engine.embed, texts, source)
        except ValueError as e:
            raise APIError(400, str(e), param="input") from None
        data = []
        for i, v in enumerate(vectors):
            if body.encoding_format == "base64":
                emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode()
            else:
                emb = v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return JSONResponse({"object": "list", "data": data, "model": info.name,
                             "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})

    return app


# ----------------------------------------------------------------------------------------------
# request -> engine
# ----------------------------------------------------------------------------------------------
def _message(m: S.ChatMessage, i: int) -> dict:
    content = m.content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, S.TextPart):
                raise APIError(400, f"messages[{i}]: content parts of type {part.type!r} are not supported "
                                    "(this model reads text only).", param=f"messages.{i}.content")
            texts.append(part.text)
        content = "".join(texts)
    role = "system" if m.role == "developer" else m.role
    return {"role": role, "content": content or ""}


def _sampling(body: S._Sampling, max_tokens: Optional[int]) -> SamplingParams:
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    return SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        min_p=body.min_p,
        repeat_penalty=body.repeat_penalty,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        max_tokens=max_tokens,
        seed=None if body.seed is None else body.seed & 0xFFFFFFFF,  # any int64, as OpenAI takes
        stop=stop,
    )


def _n_params(params: SamplingParams, n: int) -> list[SamplingParams]:
    import dataclasses

    if n == 1:
        return [params]
    # a fixed seed still gives n different answers, reproducibly
    return [dataclasses.replace(params, seed=None if params.seed is None else (params.seed + i) & 0xFFFFFFFF)
            for i in range(n)]


def _grammar(fmt: Any) -> Optional[str]:
    if fmt is None or isinstance(fmt, S.ResponseFormatText):
        return None
    from ..structured import grammar

    # json_object, and a json_schema without a schema: any JSON object
    schema = None if isinstance(fmt, S.ResponseFormatJSONObject) else (fmt.json_schema.schema_ or None)
    try:
        return grammar(schema)  # cached: clients send the same schema with every request
    except (TypeError, ValueError) as e:
        raise APIError(400, f"response_format.json_schema.schema: {e}", param="response_format") from None


async def _run(engine: Any, specs: list, body: Any, request: Request, chunks: Any, prompt_field: str):
    """Submit the generations; an SSE ``Response`` when streaming, else the ``Completion`` list."""
    if body.stream and len(specs) > 1:
        raise APIError(400, "Streaming supports one prompt and n=1.", param="n")
    reqs = _submit_all(engine, specs)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _stream(reqs[0], request, chunks, include_usage, prompt_field)
    return list(await asyncio.gather(*[_collect(r, request, prompt_field) for r in reqs]))


def _submit_all(engine: Any, specs: list) -> list:
    if not engine.loaded:
        raise _as_api_error(NoModelLoaded())
    reqs = []
    try:
        for spec in specs:
            reqs.append(engine.submit(spec))
    except BaseException as e:
        for r in reqs:
            r.cancel()
        raise _as_api_error(e) from None
    return reqs


async def _until_disconnect(request: Request, req: Any, awaitable: Any) -> Any:
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


async def _collect(req: Any, request: Request, prompt_field: str = "messages") -> Completion:
    async def drain() -> Completion:
        async for _ in req.aiter():
            pass
        return req.result()

    try:
        res = await _until_disconnect(request, req, drain())
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except BaseException as e:
        raise _as_api_error(e, prompt_field) from None
    if res.finish_reason == "cancelled":
        raise _cancelled_in_kernel()
    return res


def _cancelled_in_kernel() -> APIError:
    """A generation cancelled while its client was still there: the notebook unloaded or
    reloaded the model, or the server is stopping. Never reported as a normal "stop"."""
    return APIError(503, "The generation was cancelled in the kernel (the model was unloaded or reloaded, "
                         "or the server is stopping).", code="cancelled")


async def _stream(req: Any, request: Request, chunks: Any, include_usage: bool, prompt_field: str) -> Response:
    """An SSE response. The first text is awaited before answering, so an error that happens
    before generation starts (e.g. the prompt does not fit) is still a plain HTTP error."""
    from sse_starlette.sse import EventSourceResponse

    it = req.aiter()
    try:
        first: Optional[str] = await _until_disconnect(request, req, it.__anext__())
    except StopAsyncIteration:
        first = None
    except BaseException as e:
        req.cancel()
        if isinstance(e, asyncio.CancelledError):
            raise
        raise _as_api_error(e, prompt_field) from None

    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in chunks(req, first, it, include_usage):
                yield chunk
            yield "[DONE]"
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            err = _as_api_error(e)
            yield json.dumps(error_body(err.status, err.message, err.param, err.code))
        finally:
            req.cancel()  # a no-op once finished; stops the generation when the client went away

    return EventSourceResponse(events(), sep="\n", ping=15)


async def _deltas(req: Any, first: Optional[str], it: Any) -> AsyncIterator[tuple[str, list]]:
    """(text, logprob entries) pairs: every entry is sent once, with or before its text."""
    sent = 0

    def take() -> list:
        nonlocal sent
        entries = req.logprobs[sent:]
        sent += len(entries)
        return entries

    if first is not None:
        yield first, take()
    async for delta in it:
        yield delta, take()
    if req.logprobs[sent:]:
        yield "", take()


def _chat_chunks(cid: str, created: int, model: str):
    def chunk(delta: dict, finish: Optional[str] = None, logprobs: Any = None) -> str:
        return json.dumps({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        })

    async def gen(req: Any, first: Optional[str], it: Any, include_usage: bool) -> AsyncIterator[str]:
        want_lp = req.spec.logprobs is not None
        yield chunk({"role": "assistant", "content": ""})
        async for text, entries in _deltas(req, first, it):
            yield chunk({"content": text}, logprobs={"content": entries} if want_lp else None)
        res = req.result()
        if res.finish_reason == "cancelled":
            raise _cancelled_in_kernel()
        yield chunk({}, finish=_finish(res))
        if include_usage:
            yield json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                              "choices": [], "usage": _usage([res])})

    return gen


def _text_chunks(cid: str, created: int, model: str, echo: str):
    def chunk(text: str, finish: Optional[str] = None, logprobs: Any = None) -> str:
        return json.dumps({"id": cid, "object": "text_completion", "created": created, "model": model,
                           "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}]})

    async def gen(req: Any, first: Optional[str], it: Any, include_usage: bool) -> AsyncIterator[str]:
        want_lp = req.spec.logprobs is not None
        if echo:
            yield chunk(echo)
        offset = len(echo)
        async for text, entries in _deltas(req, first, it):
            yield chunk(text, logprobs=_legacy_logprobs(entries, offset) if want_lp else None)
            offset += sum(len(e["token"]) for e in entries)
        res = req.result()
        if res.finish_reason == "cancelled":
            raise _cancelled_in_kernel()
        yield chunk("", finish=_finish(res))
        if include_usage:
            yield json.dumps({"id": cid, "object": "text_completion", "created": created, "model": model,
                              "choices": [], "usage": _usage([res])})

    return gen


# ----------------------------------------------------------------------------------------------
# engine -> response
# ----------------------------------------------------------------------------------------------
def _finish(res: Completion) -> str:
    return "length" if res.finish_reason == "length" else "stop"


def _usage(results: list[Completion]) -> dict:
    prompt = sum(r.usage.prompt_tokens for r in results)
    completion = sum(r.usage.completion_tokens for r in results)
    cached = sum(r.usage.cached_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _timings(res: Completion) -> dict:
    t = res.timings
    return {"queued_ms": t.queued_s * 1000, "ttft_ms": t.ttft_s * 1000, "prompt_ms": t.prompt_s * 1000,
            "generation_ms": t.generation_s * 1000, "prompt_per_second": t.prompt_tokens_per_s,
            "predicted_per_second": t.generation_tokens_per_s}


def _legacy_logprobs(entries: list[dict], offset: int = 0) -> dict:
    """The /v1/completions logprobs shape: parallel lists, alternatives as {token: logprob}."""
    text_offset = []
    for e in entries:
        text_offset.append(offset)
        offset += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", [])} for e in entries],
        "text_offset": text_offset,
    }


def _card(name: str, path: str, loaded: bool) -> dict:
    try:
        created = int(os.path.getmtime(path))
    except OSError:
        created = 0
    return {"id": name, "object": "model", "created": created, "owned_by": "local", "loaded": loaded, "path": path}


def _fingerprint(info: Any) -> str:
    return f"lmnb-{_version()}-{info.quantization}"


def _is_json_type(content_type: str) -> bool:
    """Whether a Content-Type header names JSON (``application/json``, ``application/*+json``)."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _is_type_tag(part: Any) -> bool:
    if not isinstance(part, str):
        return False
    return part in ("str", "int", "float", "bool", "list", "dict") or "[" in part or part[:1].isupper()


def _version() -> str:
    from .. import __version__

    return __version__


class _StatsMiddleware:
    """Counts requests by path and status and keeps the last few (pure ASGI: streaming-safe)."""

    def __init__(self, app: Any, stats: ServerStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [0]

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.stats.in_flight += 1
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.stats.in_flight -= 1
            self.stats.record(scope["method"], scope["path"], status[0] or 499, time.perf_counter() - t0)
