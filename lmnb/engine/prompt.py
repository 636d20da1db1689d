"""From a request to the tokens a sequence evaluates: the chat rendered through the template,
BOS where the model wants it, earlier turns left out when the chat outgrows the context
(``context_overflow``, see ``overflow.py``), and a clear message when the prompt does not fit."""

from __future__ import annotations

from typing import Any

from ..errors import ContextOverflow
from .request import GenerationSpec


def prompt_tokens(model: Any, spec: GenerationSpec) -> list[int]:
    """The prompt's tokens (the chat rendered through the template, with the earlier turns its
    ``context_overflow`` policy leaves out; their count goes in ``spec.dropped_messages``);
    ``ContextOverflow`` when too long."""
    policy = getattr(spec.params, "context_overflow", None) or "stop"
    dropped = 0
    if spec.messages is not None:
        tokens = chat_tokens(model, spec, spec.messages)
        if policy != "stop":
            from .overflow import fit, reply_room

            room = reply_room(model.n_ctx_seq, spec.params.max_tokens)
            tokens, dropped = fit(spec.messages, lambda msgs: chat_tokens(model, spec, msgs), tokens, policy,
                                  model.n_ctx_seq, room)  # fmt: skip
        spec.dropped_messages = dropped  # reported on the Completion (Request.deliver)
    elif isinstance(spec.prompt, list):
        tokens = list(spec.prompt)
    else:
        tokens = model.tokenize(spec.prompt or "", add_special=True, parse_special=True)
    if not tokens:
        raise ValueError("the prompt is empty")
    if len(tokens) >= model.n_ctx_seq:
        message = overflow_message(model, len(tokens))
        if dropped:
            message = (f"context_overflow={policy} left out the {dropped} earlier messages, but the system prompt "
                       f"and the last message alone are too long. {message}")
        elif spec.messages is not None and policy == "stop" and _has_earlier_turns(spec.messages):
            message += (" Or let long chats keep going: context_overflow='rolling_window' (or 'truncate_middle') "
                        "leaves the oldest turns out of the prompt.")
        raise ContextOverflow(message)
    return tokens


def _has_earlier_turns(messages: list) -> bool:
    from .overflow import turns

    return len(turns(messages)[1]) > 1


def chat_tokens(model: Any, spec: GenerationSpec, messages: list) -> list[int]:
    """``messages`` rendered through the chat template (with the spec's tools and variables), as tokens."""
    prompt_text = model.render_chat(messages, tools=spec.tools, **(spec.template_kwargs or {}))
    tokens = model.tokenize(prompt_text, add_special=False, parse_special=True)
    if not tokens or tokens[0] != bos(model):
        # templates normally write BOS themselves; add it if the model wants one and it didn't
        tokens = maybe_bos(model, tokens)
    return tokens


def overflow_message(model: Any, n_tokens: int) -> str:
    """Why ``n_tokens`` do not fit, and a context size that exists for this model (or that none does)."""
    trained = model.info.context_length or 0
    # per-sequence KV streams (batch_invariant) split the context; a shared cache lets each use all of it
    split = model.n_seq_max > 1 and model.n_ctx_seq < model.n_ctx
    if split:
        held = f"each of the {model.n_seq_max} parallel sequences holds {model.n_ctx_seq} ({model.n_ctx} / {model.n_seq_max})"
    else:
        held = f"the context holds {model.n_ctx_seq}"
    if trained and n_tokens >= trained:
        return (f"The prompt is {n_tokens} tokens but {held}, and this model was trained on at most {trained} "
                "tokens: the prompt is too long for this model. Shorten it or split it.")
    want = _next_pow2(n_tokens + 512)
    if trained:
        want = min(want, trained)  # a context beyond the trained length does not help the model
    hint = f"`%lm load --ctx {want * model.n_seq_max}`" if split else f"`%lm load --ctx {want}`"
    return f"The prompt is {n_tokens} tokens but {held}. Shorten it, or reload with a larger context (e.g. {hint})."


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def bos(model) -> int:
    import llama_cpp as C  # only once a model is loaded: `import lmnb` stays light

    return int(C.llama_vocab_bos(model.vocab))


def maybe_bos(model, tokens: list[int]) -> list[int]:
    import llama_cpp as C

    if C.llama_vocab_get_add_bos(model.vocab) and bos(model) >= 0:
        return [bos(model)] + tokens
    return tokens


def _next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p
