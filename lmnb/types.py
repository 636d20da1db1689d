"""Plain data passed between the engine and its callers (magics, API, widgets, server).

Everything here is a frozen-ish dataclass with a readable repr; nothing imports llama.cpp.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

Message = dict  # {"role": "user"|"assistant"|"system", "content": str}
FinishReason = Literal["stop", "length", "cancelled", "error", "tool_calls"]


class _SamplingMethods:
    def validate(self) -> "SamplingParams":
        """A checked copy (``stop`` as a list, ``logit_bias`` keyed by int); ``ValueError`` with a
        user-facing message for an out-of-range value, saying the valid range."""
        from .params import SAMPLING, check_logit_bias

        values = {}
        for p in SAMPLING:
            value = getattr(self, p.name)
            if p.name == "stop" and value is not None:
                stops = [value] if isinstance(value, str) else value
                if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) for s in stops):
                    raise ValueError(f"stop={value!r}: expected a string or a list of strings")
                value = [s for s in stops if s]
            elif p.name == "logit_bias" and value is not None:
                value = check_logit_bias(value)
            else:
                value = p.check(value)
            values[p.name] = value
        return SamplingParams(**values)

    def merged(self, defaults: "SamplingParams") -> "SamplingParams":
        """These params, with unset fields taken from ``defaults``."""
        out = {}
        for f in dataclasses.fields(self):
            mine = getattr(self, f.name)
            out[f.name] = mine if mine is not None else getattr(defaults, f.name)
        return SamplingParams(**out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __repr__(self) -> str:
        set_ = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                         if getattr(self, f.name) is not None)  # fmt: skip
        return f"SamplingParams({set_})"


def _sampling_class() -> type:
    from .params import SAMPLING

    fields = [(p.name, Optional[p.type], field(default=None, metadata={"param": p})) for p in SAMPLING]
    doc = ("Sampling settings for one request, one field per ``lmnb.params.SAMPLING`` entry. ``None`` "
           "fields are filled from the session defaults (``LM``).")
    return dataclasses.make_dataclass("SamplingParams", fields, bases=(_SamplingMethods,),
                                      namespace={"__module__": __name__, "__doc__": doc}, repr=False)  # fmt: skip


# Declared in lmnb.params (the one table of parameters); built here so every module gets the same class.
SamplingParams = _sampling_class()

# Names of every sampling parameter, in one place (config, API, magics and CLI all use it).
SAMPLING_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SamplingParams))


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the KV cache, not evaluated again

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Timings:
    """Wall-clock timings of one request, in seconds, measured on the engine's worker thread."""

    queued_s: float = 0.0  # waiting for the worker
    ttft_s: float = 0.0  # submission -> first generated token
    prompt_s: float = 0.0  # prompt evaluation
    generation_s: float = 0.0  # first generated token -> last
    prompt_tokens_per_s: float = 0.0
    generation_tokens_per_s: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.generation_tokens_per_s:.1f} tok/s, "
            f"first token {self.ttft_s * 1000:.0f} ms, prompt {self.prompt_tokens_per_s:.0f} tok/s"
        )


@dataclass
class ToolCall:
    """A call the model asked for: a tool's name and its arguments as JSON text (OpenAI's shape)."""

    id: str
    name: str
    arguments: str = "{}"

    def args(self) -> dict[str, Any]:
        """The arguments as a dict (``ValueError`` if they are not a JSON object)."""
        import json

        value = json.loads(self.arguments or "{}")
        if not isinstance(value, dict):
            raise ValueError(f"the arguments of {self.name} are not a JSON object: {self.arguments[:200]}")
        return value

    def openai(self) -> dict[str, Any]:
        """As an assistant message's ``tool_calls`` item."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class Completion:
    """The final result of a request."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    model: str = ""
    params: Optional[SamplingParams] = None
    request_id: str = ""
    error: Optional[str] = None
    logprobs: Optional[list[dict]] = field(default=None, repr=False)  # OpenAI-style, when requested
    parsed: Any = field(default=None, repr=False)  # the reply as the object of a schema (chat(schema=...))
    # why ``parsed`` is None although a schema was given (a StructuredOutputError)
    parse_error: Optional[Exception] = field(default=None, repr=False)
    # the tool calls the reply makes (``finish_reason`` "tool_calls"); ``text`` is then what came before them
    tool_calls: Optional[list[ToolCall]] = None
    # what a reasoning model thought before its answer (``text`` holds the answer only)
    reasoning: Optional[str] = field(default=None, repr=False)
    # with ``chat(tools=...)``: every call the model made on the way to this answer (``lmnb.tools.loop.Step``)
    steps: list = field(default_factory=list, repr=False)
    # earlier messages the ``context_overflow`` policy left out of this prompt to fit the context
    # (they stay in the conversation; only the model did not see them)
    dropped_messages: int = 0
    # the LoRA adapters the reply was generated with, {name: scale} (empty: the base model alone)
    lora: dict = field(default_factory=dict)
    # with ``chat(docs=...)``: the numbered document chunks put in the prompt, as dicts (number, file,
    # where, text, score, cited); the reply cites them as [1], [2], ...
    sources: list = field(default_factory=list, repr=False)

    def stats_line(self) -> str:
        """One line for the bottom of a cell: tokens, speed, time to first token."""
        t, u = self.timings, self.usage
        extra = "" if self.finish_reason == "stop" else f" · stopped: {self.finish_reason}"
        if self.dropped_messages:
            extra += f" · {dropped_text(self.dropped_messages)}"
        # cached: prompt tokens taken from the KV cache (earlier turns, a shared prefix), not read again
        cached = f" ({u.cached_tokens} cached)" if u.cached_tokens else ""
        if self.lora:
            extra += " · LoRA " + ", ".join(f"{n}×{s:g}" for n, s in self.lora.items())
        return (
            f"{u.completion_tokens} tokens · {t.generation_tokens_per_s:.1f} tok/s · "
            f"first token {t.ttft_s * 1000:.0f} ms · prompt {u.prompt_tokens} tokens{cached}"
            f"{extra}"
        )

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return (
            f"Completion(text={text!r}, finish_reason={self.finish_reason!r}, "
            f"tokens={self.usage.completion_tokens}, tok/s={self.timings.generation_tokens_per_s:.1f})"
        )

    def __str__(self) -> str:
        return self.text


def dropped_text(n: int) -> str:
    """What the cell, the CLI and the chat pane say when ``context_overflow`` left messages out."""
    return f"{n} earlier message{'s' if n != 1 else ''} left out to fit the context"


@dataclass
class ModelInfo:
    """What a GGUF file says about itself (read from its metadata, no weights loaded)."""

    path: str
    name: str
    architecture: str
    parameters: int
    quantization: str
    file_size: int
    context_length: int
    layers: int
    has_chat_template: bool
    chat_template: Optional[str] = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        p = self.parameters
        psize = f"{p / 1e9:.2f}B" if p >= 1e9 else f"{p / 1e6:.0f}M"
        return (
            f"{self.name}: {self.architecture}, {psize} parameters, {self.quantization}, "
            f"{_size(self.file_size)}, trained context {self.context_length}, "
            f"{self.layers} layers, chat template {'yes' if self.has_chat_template else 'no'}"
        )


@dataclass
class LoadOptions:
    """How to load a model. ``None`` fields come from the session defaults (``LM`` config)."""

    n_ctx: Optional[int] = None
    n_gpu_layers: Optional[Union[int, str]] = None  # an int, "auto" or "max"
    n_threads: Optional[int] = None
    n_batch: Optional[int] = None
    n_parallel: Optional[int] = None  # sequences decoded together (continuous batching)
    batch_invariant: Optional[bool] = None  # one KV stream per sequence: replies identical alone and batched
    flash_attn: Optional[bool] = None
    use_mmap: Optional[bool] = None
    seed: Optional[int] = None
    chat_template: Optional[str] = None


@dataclass
class Status:
    """What ``%lm status`` shows."""

    loaded: bool
    model: Optional[ModelInfo] = None
    options: Optional[LoadOptions] = None
    rss_bytes: int = 0
    model_bytes: int = 0
    last_tokens_per_s: Optional[float] = None
    queue_depth: int = 0
    requests_served: int = 0
    backend: str = "local"
    models: list = field(default_factory=list)  # every loaded model (``lmnb.registry.Loaded``)

    def __repr__(self) -> str:
        others = f", models={[m.name for m in self.models]!r}" if len(self.models) > 1 else ""
        if not self.loaded:
            return f"Status(loaded=False, backend={self.backend!r}, rss={_size(self.rss_bytes)}{others})"
        tps = "-" if self.last_tokens_per_s is None else f"{self.last_tokens_per_s:.1f}"
        return (
            f"Status(model={self.model.name!r}, rss={_size(self.rss_bytes)}, "
            f"last tok/s={tps}, queue={self.queue_depth}, served={self.requests_served}{others})"
        )


def _size(n: int) -> str:
    from .tables import human_bytes  # the one size format (decimal units, as the Hub shows files)

    return human_bytes(n)
