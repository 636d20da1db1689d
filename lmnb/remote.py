"""A remote OpenAI-compatible backend: LM Studio, Ollama, llama-server, vLLM, or another lmnb.

``lmnb.connect(url)`` makes ``%%lm``, ``%%lm chat``, the widgets and the Python API send their
generations to that server instead of the in-kernel engine. It hands out the same ``Request``
handles as the engine (stream deltas, ``result()``, ``cancel()``), so no caller changes.

A busy or unreachable server is tried again with backoff (429, 502, 503, 504 and connection
errors, honouring ``Retry-After``) as long as no text of the reply has reached the caller; then
the request fails with an ``EndpointError``, which ``lmnb.farm`` takes as "try another server".
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Optional

from .errors import LmnbError
from .params import SAMPLING
from .types import Completion, SamplingParams, Status, Timings, Usage

_OPENAI_NAMES = {p.openai for p in SAMPLING if p.openai}
_REQUEST_KEYS = {"model", "stream", "stream_options"}  # the call's own arguments, never extra_body
# What a server answers when it is busy or restarting (or a proxy in front of it cannot reach it):
# worth another try. Anything else (400, 401, 404, 500...) would answer the same again.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is cut to this (attempts stay bounded anyway)


class EndpointError(LmnbError):
    """A server could not serve a request (busy, unreachable, or the connection dropped), after
    retries: another server may. ``streamed``: part of the reply had already reached the caller."""

    def __init__(self, message: str, url: str, streamed: bool = False) -> None:
        super().__init__(message)
        self.url, self.streamed = url, streamed


def retry_after(headers: Any) -> Optional[float]:
    """The wait a response's ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms`` asks
    for, in seconds (capped at ``MAX_RETRY_AFTER``); ``None`` when it asks for none."""
    import email.utils

    headers = headers or {}
    wait: Optional[float] = None
    try:
        if headers.get("retry-after-ms"):
            wait = float(headers["retry-after-ms"]) / 1000
        elif headers.get("retry-after"):
            value = headers["retry-after"].strip()
            try:
                wait = float(value)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                wait = when.timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return None if wait is None else min(max(wait, 0.0), MAX_RETRY_AFTER)


def backoff(attempt: int) -> float:
    """Seconds before try ``attempt + 1``: 0.5, 1, 2, 4... up to 8, with jitter so that many
    requests refused at once do not all come back at the same instant."""
    return min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def new_request(spec: Any, stages: Any, on_done: Any) -> tuple[Any, SamplingParams]:
    """A ``Request`` for ``spec`` with its sampling resolved, and the parameters the caller set."""
    import dataclasses

    from .engine.engine import resolve_sampling
    from .engine.request import Request

    explicit = spec.params or SamplingParams()
    spec = dataclasses.replace(spec, params=resolve_sampling(explicit))
    return Request(spec, stages=stages, on_done=on_done), explicit


def request_fields(p: SamplingParams, explicit: SamplingParams) -> dict[str, Any]:
    """The OpenAI-style request fields for ``p`` (from the parameter table). OpenAI's own fields
    are always sent; llama.cpp extensions (top_k, min_p, DRY...) only when the caller set them:
    OpenAI itself rejects unknown fields, while llama-server, LM Studio and lmnb understand them."""
    out: dict[str, Any] = {}
    for param in SAMPLING:
        value = getattr(p, param.name)
        if param.openai is None and getattr(explicit, param.name) is None:
            continue
        if value is None or (param.name == "max_tokens" and value < 0) or (param.type in (list, dict) and not value):
            continue
        if param.name == "logit_bias":
            value = {str(k): v for k, v in value.items()}
        out[param.openai or param.name] = value
    return out


class RemoteBackend:
    """Generations go to ``url`` (an OpenAI-compatible base URL, e.g. ``http://host:1234/v1``)."""

    def __init__(self, url: str, api_key: Optional[str] = None, model: Optional[str] = None,
                 timeout: float = 600) -> None:
        import openai

        self.url = url.rstrip("/")
        # no retries in the client: serve() retries itself, can be cancelled while it waits, and
        # says how often it tried
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or "not-needed", timeout=timeout,
                                    max_retries=0)
        self.max_attempts = 4  # tries per request on 429/502/503/504 and connection errors
        self.requests_served = 0
        self.last_tokens_per_s: Optional[float] = None
        self.n_parallel = 8  # what status reports; lmnb.map sends `parallel` at once, the server batches them
        self.tokens_generated = 0  # streamed chunks, about one token each (monitors take its rate)
        try:
            listed = list(self.client.models.list())
        except openai.AuthenticationError:
            raise LmnbError(f"{self.url} refused the API key (401). Pass the right one with --api-key.") from None
        except openai.APIConnectionError:
            raise LmnbError(f"Cannot reach {self.url}: is the server running, and is the URL right "
                            "(it usually ends in /v1)?") from None
        except openai.APIStatusError as e:
            raise LmnbError(f"{self.url}/models answered {e.status_code}: {_message(e)}") from None
        ids = [m.id for m in listed]
        if model is None:
            # lmnb marks the loaded model; otherwise the first one listed
            loaded = [m.id for m in listed if (getattr(m, "model_extra", None) or {}).get("loaded")]
            if not ids:
                raise LmnbError(f"{self.url} lists no models; name one with --model.")
            model = (loaded or ids)[0]
        elif ids and model not in ids:
            raise LmnbError(f"{self.url} has no model {model!r}; it lists: {', '.join(ids)}")
        self.model = model
        self.available = ids

    # --- the engine's interface, as used by lmnb.api --------------------------------------------
    @property
    def loaded(self) -> bool:
        return True

    @property
    def info(self) -> None:
        return None  # no GGUF file on this side

    def submit(self, spec: Any, *, stages: Any = (), on_done: Any = ()) -> Any:
        req, explicit = new_request(spec, stages, on_done)
        threading.Thread(target=self._run, args=(req, explicit), name=f"lmnb-remote-{req.id}", daemon=True).start()
        return req

    def status(self) -> Status:
        import psutil

        return Status(loaded=True, rss_bytes=psutil.Process().memory_info().rss,
                      last_tokens_per_s=self.last_tokens_per_s, requests_served=self.requests_served,
                      backend=f"{self.url} ({self.model})")

    # --- worker ---------------------------------------------------------------------------------
    def _run(self, req: Any, explicit: SamplingParams) -> None:
        error = self.serve(req, explicit)
        if error is not None:
            req.fail(error)

    def serve(self, req: Any, explicit: SamplingParams) -> Optional[BaseException]:
        """Send ``req`` to this server and deliver its result, trying again (with backoff, or
        after ``Retry-After``) while the server is busy or unreachable and nothing has been
        streamed yet. Returns the error instead of failing ``req``, so that a farm can hand the
        request to another server (an ``EndpointError``); ``None`` once the result is delivered."""
        import httpx
        import openai

        attempt = 0
        while True:
            attempt += 1
            streamed: list[bool] = [False]
            try:
                self._stream(req, explicit, streamed)
                return None
            except openai.APIStatusError as e:
                why = f"{self.url} answered {e.status_code}: {_message(e)}"
                if e.status_code not in RETRY_STATUSES:
                    return LmnbError(why)
                wait = retry_after(getattr(e.response, "headers", None))
            except (openai.APIConnectionError, httpx.TransportError) as e:  # mid-stream: httpx's own
                why = f"Lost the connection to {self.url}: {e}" if streamed[0] else f"Cannot reach {self.url}: {e}"
                wait = None
            except BaseException as e:
                return e
            # text already streamed cannot be taken back: that request is not sent again
            give_up = streamed[0] or attempt >= self.max_attempts
            wait = backoff(attempt) if wait is None else wait
            if req.cancelled or (not give_up and not _wait_unless_cancelled(req, wait)):
                req.deliver(self._completion(req, [], "cancelled", None, 0.0, time.perf_counter()))
                return None
            if give_up:
                tries = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
                return EndpointError(f"{why}{tries}", self.url, streamed=streamed[0])

    def _stream(self, req: Any, explicit: SamplingParams, streamed: list[bool]) -> None:
        spec, p = req.spec, req.spec.params
        kw: dict[str, Any] = dict(model=self.model, stream=True, stream_options={"include_usage": True})
        kw.update(request_fields(p, explicit))
        extra = {k: kw.pop(k) for k in list(kw) if k not in _OPENAI_NAMES and k not in _REQUEST_KEYS}
        extra.update(_shape_fields(req, kw, chat=spec.messages is not None))
        if extra:
            kw["extra_body"] = extra
        text: list[str] = []
        finish, usage, t_first = "stop", None, 0.0
        t0 = time.perf_counter()
        if spec.messages is not None:
            stream = self.client.chat.completions.create(messages=spec.messages, **kw)
        else:
            stream = self.client.completions.create(prompt=spec.prompt, **kw)
        with stream:
            for chunk in stream:
                if req.cancelled:
                    finish = "cancelled"
                    break
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    piece = choice.delta.content if spec.messages is not None else choice.text
                    if piece:
                        if not t_first:
                            t_first = time.perf_counter()
                        text.append(piece)
                        streamed[0] = True
                        req.emit(piece)
                        self.tokens_generated += 1
                    if choice.finish_reason:
                        finish = "length" if choice.finish_reason == "length" else "stop"
        result = self._completion(req, text, finish, usage, t_first, t0)
        self.requests_served += 1
        if result.usage.completion_tokens > 1:
            self.last_tokens_per_s = result.timings.generation_tokens_per_s
        req.deliver(result)

    def _completion(self, req: Any, text: list[str], finish: str, usage: Any, t_first: float,
                    t0: float) -> Completion:  # fmt: skip
        now = time.perf_counter()
        n_gen = usage.completion_tokens if usage else len(text)  # chunks: about one token each
        gen_s = max(now - (t_first or now), 1e-9)
        timings = Timings(
            ttft_s=(t_first - req.submitted) if t_first else 0.0,
            prompt_s=(t_first - t0) if t_first else 0.0,
            generation_s=gen_s,
            generation_tokens_per_s=(n_gen - 1) / gen_s if n_gen > 1 else 0.0,
        )
        return Completion(
            text="".join(text),
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=n_gen,
                        cached_tokens=_cached(usage)),
            timings=timings,
            model=self.model,
            params=req.spec.params,
            request_id=req.id,
        )

    def __repr__(self) -> str:
        return f"<lmnb remote backend {self.url} model={self.model!r}>"


def _message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return getattr(e, "message", None) or str(e)


def _wait_unless_cancelled(req: Any, seconds: float) -> bool:
    """Sleep ``seconds``, waking early when ``req`` is cancelled (then ``False``): Ctrl-C must
    not wait out a long Retry-After."""
    deadline = time.monotonic() + seconds
    while not req.cancelled:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))
    return False


def _cached(usage: Any) -> int:
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    return int(getattr(details, "cached_tokens", 0) or 0) if details else 0


def _shape_fields(req: Any, kw: dict[str, Any], chat: bool) -> dict[str, Any]:
    """A reply's required shape, as servers take it: a schema as OpenAI's ``response_format``
    (LM Studio, Ollama, llama-server, vLLM, lmnb) for chats, as llama-server's ``json_schema`` for
    completions; a bare GBNF grammar as llama-server's ``grammar``. Returns the extra body fields."""
    from .replies import SchemaStage

    schema = next((st.schema for st in req.stages if isinstance(st, SchemaStage)), None)
    if schema is not None:
        from .structured import json_schema

        body = json_schema(schema)
        if not chat:
            return {"json_schema": body}
        kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": body}}
        return {}
    return {"grammar": req.spec.grammar} if req.spec.grammar else {}
