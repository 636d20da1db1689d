"""The routes: ``openai_routes`` (mounted at ``/v1`` and at the root, as clients use either) and ``extra``
(``/health``, ``/metrics``, and llama-server's ``/tokenize`` and ``/detokenize``).

What a route needs from its app comes through dependencies: ``get_engine`` (the engine in
``app.state.engine``), ``authenticate`` (the key in ``app.state.api_key``) and ``get_stats``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import time
import uuid
from typing import Callable, Optional, Sequence, Union

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ..engine import Engine, GenerationSpec
from ..types import Completion, ModelInfo
from . import convert, schemas as S
from .errors import ERROR_DOCS, APIError, as_api_error
from .generate import chat_specs, lora_choice, submit_all
from .models import choose, listed, loaded_model, names_model, served_model
from .stats import ServerStats
from .streaming import Chunks, collect, stream


# ---- dependencies ----------------------------------------------------------------------------
def get_engine(request: Request) -> Engine:
    """The engine this app serves."""
    return request.app.state.engine


def get_stats(request: Request) -> ServerStats:
    return request.app.state.stats


def authenticate(request: Request) -> None:
    """Require ``Authorization: Bearer KEY`` (or ``x-api-key: KEY``) when the app has a key."""
    api_key: Optional[str] = request.app.state.api_key
    if not api_key:
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
    if not given:
        raise APIError(401, "Missing API key: send 'Authorization: Bearer <key>'.", code="invalid_api_key")
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")


def embedding_model(engine: Engine, name: Optional[str]) -> tuple[str, ModelInfo]:
    """Which model embeds: the one named, else the embedding model, else the chat model."""
    emb, chat = engine.embedder_info, engine.info
    if emb is not None and (not name or names_model(emb, name)):
        return "embedder", emb
    if not name or emb is None:
        return "chat", served_model(engine, name)
    if chat is not None and names_model(chat, name):
        return "chat", chat
    served = " and ".join(repr(m.name) for m in (emb, chat) if m is not None)
    raise APIError(404, f"The model {name!r} is not loaded; embeddings come from {served} (see GET /v1/models).",
                   param="model", code="model_not_found")  # fmt: skip


def _streaming_docs(description: str) -> dict:
    """OpenAPI responses of a route that answers JSON, or SSE when ``stream=true``."""
    return {**ERROR_DOCS, 200: {"content": {"text/event-stream": {}}, "description": description}}


# ---- the OpenAI API --------------------------------------------------------------------------
openai_routes = APIRouter(dependencies=[Depends(authenticate)], responses=ERROR_DOCS)


@openai_routes.get("/models", response_model=S.ModelList)
async def list_models(request: Request, engine: Engine = Depends(get_engine)) -> JSONResponse:
    """The loaded models (and embedding model) first, then the other models on this machine."""
    from ..sources.library import local_models

    reg = request.app.state.registry
    served_models = listed(reg) if reg is not None else [(m.name, m) for m in (engine.info,) if m is not None]
    emb = engine.embedder_info
    data = [convert.card(name, m.path, True) for name, m in served_models]
    if emb is not None:
        data.append(convert.card(emb.name, emb.path, True))
    try:
        others = await asyncio.to_thread(local_models, ())
    except Exception:
        others = []
    served = {m.path for _, m in served_models} | ({emb.path} if emb is not None else set())
    data += [convert.card(m.name, m.path, False) for m in others if os.path.abspath(m.path) not in served]
    return JSONResponse({"object": "list", "data": data})


@openai_routes.get("/models/{model_id:path}", response_model=S.ModelCard)
async def get_model(model_id: str, request: Request, engine: Engine = Depends(get_engine)) -> JSONResponse:
    reg = request.app.state.registry
    if reg is None or reg.find(model_id) is None:
        info = served_model(engine, model_id)
        return JSONResponse(convert.card(info.name, info.path, True))
    return JSONResponse(convert.card(model_id, reg.get(model_id).info.path, True))


@openai_routes.post("/chat/completions", response_model=S.ChatCompletion,
             responses=_streaming_docs("A chat completion, or SSE chunks when stream=true"))
async def chat_completions(body: S.ChatCompletionRequest, request: Request) -> Response:
    engine, info, key = await choose(request, body.model)
    messages = [convert.message(m, i) for i, m in enumerate(body.messages)]
    params = convert.sampling(body, body.max_completion_tokens or body.max_tokens)
    grammar = convert.grammar(body.response_format)
    if body.top_logprobs and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs=true.", param="top_logprobs")
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    n = body.n or 1
    on_done = _continue(body, key, messages, n)
    if on_done:
        messages = on_done.history + messages
    choice = body.tool_choice.model_dump() if isinstance(body.tool_choice, S.NamedToolChoice) else body.tool_choice
    specs, stages = chat_specs(messages, convert.tools(body), choice, body.parallel_tool_calls, info,
                               convert.n_params(params, n), grammar=grammar, logprobs=logprobs,
                               template_kwargs=body.chat_template_kwargs, lora=lora_choice(engine, body.lora))  # fmt: skip
    fmt = Chunks(f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), info.name, convert.fingerprint(info),
                 chat=True)
    out = await _run(engine, key, specs, body, request, fmt, "messages", conversation=body.conversation,
                     on_done=[on_done] if on_done else [], stages=stages)
    if isinstance(out, Response):
        return out
    choices = [{
        "index": i,
        "message": convert.assistant_message(res),
        "finish_reason": convert.finish(res),
        "logprobs": {"content": res.logprobs} if res.logprobs is not None else None,
    } for i, res in enumerate(out)]
    return JSONResponse({
        "id": fmt.id, "object": "chat.completion", "created": fmt.created, "model": info.name,
        "choices": choices, "usage": convert.usage(out, n), "system_fingerprint": fmt.fingerprint,
        "timings": convert.timings(out[0]),
    })


@openai_routes.post("/completions", response_model=S.TextCompletion,
             responses=_streaming_docs("A completion, or SSE chunks when stream=true"))
async def completions(body: S.CompletionRequest, request: Request) -> Response:
    engine, info, key = await choose(request, body.model)
    if body.suffix:
        raise APIError(400, "suffix (fill-in-the-middle) is not supported.", param="suffix")
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if any(not p for p in prompts):
        raise APIError(400, "prompt must not be empty.", param="prompt")
    params = convert.sampling(body, body.max_tokens)
    n = body.n or 1
    lora = lora_choice(engine, body.lora)
    specs = [GenerationSpec(prompt=prompt, params=p, logprobs=body.logprobs, lora=lora)
             for prompt in prompts for p in convert.n_params(params, n)]  # fmt: skip
    fmt = Chunks(f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time()), info.name, convert.fingerprint(info),
                 chat=False, echo=prompts[0] if body.echo else "")
    out = await _run(engine, key, specs, body, request, fmt, "prompt")
    if isinstance(out, Response):
        return out
    choices = []
    for i, res in enumerate(out):
        prefix = prompts[i // n] if body.echo else ""
        choices.append({
            "index": i, "text": prefix + res.text, "finish_reason": convert.finish(res),
            "logprobs": convert.legacy_logprobs(res.logprobs, len(prefix)) if res.logprobs is not None else None,
        })
    return JSONResponse({"id": fmt.id, "object": "text_completion", "created": fmt.created, "model": info.name,
                         "choices": choices, "usage": convert.usage(out, n), "system_fingerprint": fmt.fingerprint})


@openai_routes.post("/embeddings", response_model=S.EmbeddingList)
async def embeddings(body: S.EmbeddingRequest, engine: Engine = Depends(get_engine)) -> JSONResponse:
    source, info = embedding_model(engine, body.model)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if body.dimensions is not None:
        raise APIError(400, "dimensions is not supported: the model's embedding size is fixed.", param="dimensions")
    try:
        vectors, n_tokens = await asyncio.to_thread(engine.embed, texts, source)
    except ValueError as e:
        raise APIError(400, str(e), param="input") from None
    data = []
    for i, v in enumerate(vectors):
        if body.encoding_format == "base64":
            emb: Union[str, list[float]] = base64.b64encode(v.astype("<f4").tobytes()).decode()
        else:
            emb = v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return JSONResponse({"object": "list", "data": data, "model": info.name,
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})


class _Continue:
    """Appends a server turn to a named conversation of the session (the ``conversation`` field)."""

    def __init__(self, name: str, user: dict) -> None:
        from ..conversations import named

        self.name = name
        self.conversation = named(name)
        self.history = self.conversation.all_messages()  # its system prompt and turns, as of now
        self.user = user

    def __call__(self, result: Completion) -> None:
        from ..replies import append_to

        append_to(self.conversation, self.user)(result)


def _continue(body: S.ChatCompletionRequest, key: Optional[str], messages: list[dict], n: int) -> Optional[_Continue]:
    if body.conversation is None:
        return None
    if key is None:
        raise APIError(400, "conversation needs the kernel's server (lmnb.serve / %lm serve), which has the "
                            "session's conversations.", param="conversation")  # fmt: skip
    if n > 1:
        raise APIError(400, "conversation takes one reply (n=1): it is appended to the conversation.", param="n")
    if messages[-1]["role"] != "user":
        raise APIError(400, "With conversation, the last message must be the user's new turn.", param="messages")
    return _Continue(body.conversation, messages[-1])


async def _run(engine: Engine, key: Optional[str], specs: list[GenerationSpec], body: S.SamplingRequest, request: Request,
               fmt: Chunks, prompt_field: str, *, conversation: Optional[str] = None,
               on_done: Sequence[Callable[[Completion], None]] = (),
               stages: Optional[Callable[[], list]] = None) -> Union[Response, list[Completion]]:
    """Submit the generations; an SSE ``Response`` when streaming, else the ``Completion`` list.

    ``stages``: makes each request's output stages (they keep per-request state)."""
    if body.stream and len(specs) > 1:
        raise APIError(400, "Streaming supports one prompt and n=1.", param="n")
    reqs = submit_all(engine, key, specs, conversation=conversation, on_done=on_done, stages=stages)
    request.app.state.requests.update(reqs)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await stream(reqs[0], request, fmt, include_usage, prompt_field, bool(body.return_progress))
    return list(await asyncio.gather(*[collect(r, request, prompt_field) for r in reqs]))


# ---- health, metrics, tokens -----------------------------------------------------------------
extra = APIRouter()


@extra.get("/health", response_model=S.Health, responses={503: {"model": S.Health}})
async def health(engine: Engine = Depends(get_engine)) -> JSONResponse:
    """200 with the model's name when one is loaded, else 503 (no key needed)."""
    info = engine.info
    if info is None:
        return JSONResponse({"status": "no model loaded", "model": None}, status_code=503)
    return JSONResponse({"status": "ok", "model": info.name})


@extra.get("/metrics", dependencies=[Depends(authenticate)], response_class=Response,
           responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(engine: Engine = Depends(get_engine), stats: ServerStats = Depends(get_stats)) -> Response:
    from .metrics import render

    body, content_type = render(engine, stats)
    return Response(body, media_type=content_type)


@extra.post("/tokenize", response_model=S.TokenizeResponse, dependencies=[Depends(authenticate)],
            responses=ERROR_DOCS)
async def tokenize(body: S.TokenizeRequest, engine: Engine = Depends(get_engine)) -> JSONResponse:
    """llama-server's ``/tokenize``: the loaded model's token ids of ``content``."""
    loaded_model(engine)
    try:
        triples = await asyncio.to_thread(engine.tokenize, body.content, special=body.add_special)
    except Exception as e:
        raise as_api_error(e, "content") from None
    if not body.with_pieces:
        return JSONResponse({"tokens": [t for t, _, _ in triples]})
    return JSONResponse({"tokens": [{"id": t, "piece": _piece(b)} for t, b, _ in triples]})


def _piece(b: bytes) -> Union[str, list[int]]:
    """A token's text, or its bytes when they are not whole UTF-8 (as llama-server sends them)."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return list(b)


@extra.post("/detokenize", response_model=S.DetokenizeResponse, dependencies=[Depends(authenticate)],
            responses=ERROR_DOCS)
async def detokenize(body: S.DetokenizeRequest, engine: Engine = Depends(get_engine)) -> JSONResponse:
    """llama-server's ``/detokenize``: the text of token ids (special tokens as their text)."""
    loaded_model(engine)
    try:
        # checked against the vocabulary on the worker: llama.cpp aborts the process on a bad id
        data = b"".join(await asyncio.to_thread(engine.token_bytes, body.tokens))
    except ValueError as e:
        raise APIError(400, f"tokens: {e}.", param="tokens") from None
    except Exception as e:
        raise as_api_error(e, "tokens") from None
    return JSONResponse({"content": data.decode("utf-8", errors="replace")})
