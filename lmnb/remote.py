"""A remote OpenAI-compatible backend: LM Studio, Ollama, llama-server, vLLM, or another lmnb.

``lmnb.connect(url)`` makes ``%%lm``, ``%%lm chat``, the widgets and the Python API send their
generations to that server instead of the in-kernel engine. It hands out the same ``Request``
handles as the engine (stream deltas, ``result()``, ``cancel()``), so no caller changes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from .errors import LmnbError
from .params import SAMPLING
from .types import Completion, SamplingParams, Status, Timings, Usage

_OPENAI_NAMES = {p.openai for p in SAMPLING if p.openai}
_REQUEST_KEYS = {"model", "stream", "stream_options"}  # the call's own arguments, never extra_body


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
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or "not-needed", timeout=timeout,
                                    max_retries=1)
        self.requests_served = 0
        self.last_tokens_per_s: Optional[float] = None
        self.n_parallel = 8  # requests sent at once by lmnb.map; the server decides how it batches them
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
        import dataclasses

        from .engine.engine import resolve_sampling
        from .engine.request import Request

        explicit = spec.params or SamplingParams()
        spec = dataclasses.replace(spec, params=resolve_sampling(explicit))
        req = Request(spec, stages=stages, on_done=on_done)
        threading.Thread(target=self._run, args=(req, explicit), name=f"lmnb-remote-{req.id}", daemon=True).start()
        return req

    def status(self) -> Status:
        import psutil

        return Status(loaded=True, rss_bytes=psutil.Process().memory_info().rss,
                      last_tokens_per_s=self.last_tokens_per_s, requests_served=self.requests_served,
                      backend=f"{self.url} ({self.model})")

    # --- worker ---------------------------------------------------------------------------------
    def _run(self, req: Any, explicit: SamplingParams) -> None:
        import openai

        spec, p = req.spec, req.spec.params
        kw: dict[str, Any] = dict(model=self.model, stream=True, stream_options={"include_usage": True})
        kw.update(request_fields(p, explicit))
        extra = {k: kw.pop(k) for k in list(kw) if k not in _OPENAI_NAMES and k not in _REQUEST_KEYS}
        if extra:
            kw["extra_body"] = extra
        text, finish, usage = [], "stop", None
        n_chunks, t_first = 0, 0.0
        t0 = time.perf_counter()
        try:
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
                            n_chunks += 1
                            text.append(piece)
                            req.emit(piece)
                            self.tokens_generated += 1
                        if choice.finish_reason:
                            finish = "length" if choice.finish_reason == "length" else "stop"
        except openai.APIStatusError as e:
            req.fail(LmnbError(f"{self.url} answered {e.status_code}: {_message(e)}"))
            return
        except openai.APIConnectionError as e:
            req.fail(LmnbError(f"Lost the connection to {self.url}: {e}"))
            return
        except BaseException as e:
            req.fail(e)
            return
        now = time.perf_counter()
        n_gen = usage.completion_tokens if usage else n_chunks
        gen_s = max(now - (t_first or now), 1e-9)
        timings = Timings(
            ttft_s=(t_first - req.submitted) if t_first else 0.0,
            prompt_s=(t_first - t0) if t_first else 0.0,
            generation_s=gen_s,
            generation_tokens_per_s=(n_gen - 1) / gen_s if n_gen > 1 else 0.0,
        )
        result = Completion(
            text="".join(text),
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=n_gen,
                        cached_tokens=_cached(usage)),
            timings=timings,
            model=self.model,
            params=p,
            request_id=req.id,
        )
        self.requests_served += 1
        if n_gen > 1:
            self.last_tokens_per_s = timings.generation_tokens_per_s
        req.deliver(result)

    def __repr__(self) -> str:
        return f"<lmnb remote backend {self.url} model={self.model!r}>"


def _message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return getattr(e, "message", None) or str(e)


def _cached(usage: Any) -> int:
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    return int(getattr(details, "cached_tokens", 0) or 0) if details else 0
