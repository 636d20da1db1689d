"""OpenAI request fields to engine inputs, and engine results to OpenAI response fields."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from ..types import Completion, ModelInfo, SamplingParams
from . import schemas as S
from .errors import APIError


# ---- request -> engine -----------------------------------------------------------------------
def message(m: S.ChatMessage, i: int) -> dict:
    """One chat message as the engine takes it (text parts joined; ``developer`` is ``system``)."""
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
    out: dict = {"role": role, "content": content or ""}
    if m.tool_calls:
        out["tool_calls"] = [c.model_dump() for c in m.tool_calls]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id or ""
        if m.name:
            out["name"] = m.name
    return out


def tools(body: S.ChatCompletionRequest) -> list:
    """The request's tools as ``lmnb.tools.Tool`` (none when ``tool_choice`` is ``none``)."""
    if not body.tools:
        if body.tool_choice not in (None, "none", "auto"):
            raise APIError(400, "tool_choice needs tools.", param="tool_choice")
        return []
    from ..tools import Tool

    out = []
    for i, spec in enumerate(body.tools):
        try:
            out.append(Tool.from_openai(spec.model_dump(exclude_none=True)))
        except ValueError as e:
            raise APIError(400, f"tools[{i}]: {e}", param=f"tools.{i}") from None
    if len({t.name for t in out}) < len(out):
        raise APIError(400, "Two tools have the same name.", param="tools")
    return out


def sampling(body: S.SamplingRequest, max_tokens: Optional[int]) -> SamplingParams:
    """The request's sampling fields (every declared parameter, under its OpenAI name when it has
    one); unset ones stay ``None`` (the session's defaults)."""
    from ..params import SAMPLING

    values = {p.name: getattr(body, p.openai or p.name, None) for p in SAMPLING}
    values["stop"] = [body.stop] if isinstance(body.stop, str) else body.stop
    values["max_tokens"] = max_tokens
    # top_p 0: llama.cpp's top-p then keeps only the most likely token (greedy), as OpenAI's does
    return SamplingParams(**values)


def n_params(params: SamplingParams, n: int) -> list[SamplingParams]:
    """``n`` copies of ``params``; a fixed seed still gives n different answers, reproducibly."""
    if n == 1:
        return [params]
    return [dataclasses.replace(params, seed=None if params.seed is None else (params.seed + i) & 0xFFFFFFFF)
            for i in range(n)]


def grammar(fmt: Optional[S.ResponseFormat]) -> Optional[str]:
    """The GBNF grammar that enforces ``response_format`` (``None``: free text)."""
    if fmt is None or isinstance(fmt, S.ResponseFormatText):
        return None
    from ..structured import grammar as make_grammar

    # json_object, and a json_schema without a schema: any JSON object
    schema = None if isinstance(fmt, S.ResponseFormatJSONObject) else (fmt.json_schema.schema_ or None)
    try:
        return make_grammar(schema)  # cached: clients send the same schema with every request
    except (TypeError, ValueError) as e:
        raise APIError(400, f"response_format.json_schema.schema: {e}", param="response_format") from None


# ---- engine -> response ----------------------------------------------------------------------
def finish(res: Completion) -> str:
    return res.finish_reason if res.finish_reason in ("length", "tool_calls") else "stop"


def assistant_message(res: Completion) -> dict:
    """The ``message`` of a chat choice: the text, the thinking of a reasoning model
    (``reasoning_content``, as llama-server and DeepSeek send it), and the tool calls."""
    msg: dict = {"role": "assistant", "content": res.text}
    if res.reasoning is not None:
        msg["reasoning_content"] = res.reasoning
    if res.tool_calls:
        msg["content"] = res.text or None
        msg["tool_calls"] = [c.openai() for c in res.tool_calls]
    return msg


def usage(results: list[Completion], n: int = 1) -> dict:
    """OpenAI's usage of ``results``, ``n`` choices per prompt: each prompt is counted once (the
    n choices read the same prompt), every choice's completion tokens are counted."""
    firsts = results[::n]
    prompt = sum(r.usage.prompt_tokens for r in firsts)
    cached = sum(r.usage.cached_tokens for r in firsts)
    completion = sum(r.usage.completion_tokens for r in results)
    out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": cached}}
    dropped = sum(r.dropped_messages for r in firsts)
    if dropped:  # lmnb's extension: the request's context_overflow left earlier messages out of the prompt
        out["dropped_messages"] = dropped
    return out


def timings(res: Completion) -> dict[str, float]:
    t = res.timings
    return {"queued_ms": t.queued_s * 1000, "ttft_ms": t.ttft_s * 1000, "prompt_ms": t.prompt_s * 1000,
            "generation_ms": t.generation_s * 1000, "prompt_per_second": t.prompt_tokens_per_s,
            "predicted_per_second": t.generation_tokens_per_s}


def legacy_logprobs(entries: list[dict], offset: int = 0) -> dict:
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


def card(name: str, path: str, loaded: bool) -> dict:
    """A /v1/models entry."""
    try:
        created = int(os.path.getmtime(path))
    except OSError:
        created = 0
    return {"id": name, "object": "model", "created": created, "owned_by": "local", "loaded": loaded, "path": path}


def fingerprint(info: ModelInfo) -> str:
    """``system_fingerprint``: what decides the answers besides the request (lmnb's version, the quantization)."""
    return f"lmnb-{version()}-{info.quantization}"


def version() -> str:
    from ..version import __version__

    return __version__
