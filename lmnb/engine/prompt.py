"""From a request to the tokens a sequence evaluates: the chat rendered through the template,
BOS where the model wants it, and a clear message when the prompt does not fit."""

from __future__ import annotations

from typing import Any

from ..errors import ContextOverflow
from .request import GenerationSpec


def prompt_tokens(model: Any, spec: GenerationSpec) -> list[int]:
    """The prompt's tokens (the chat rendered through the template); ``ContextOverflow`` when too long."""
    if spec.messages is not None:
        prompt_text = model.render_chat(spec.messages, tools=spec.tools, **(spec.template_kwargs or {}))
        tokens = model.tokenize(prompt_text, add_special=False, parse_special=True)
        if not tokens or tokens[0] != bos(model):
            # templates normally write BOS themselves; add it if the model wants one and it didn't
            tokens = maybe_bos(model, tokens)
    elif isinstance(spec.prompt, list):
        tokens = list(spec.prompt)
    else:
        tokens = model.tokenize(spec.prompt or "", add_special=True, parse_special=True)
    if not tokens:
        raise ValueError("the prompt is empty")
    if len(tokens) >= model.n_ctx_seq:
        raise ContextOverflow(overflow_message(model, len(tokens)))
    return tokens


def overflow_message(model: Any, n_tokens: int) -> str:
    """Why ``n_tokens`` do not fit, and a context size that exists for this model (or that none does)."""
    trained = model.info.context_length or 0
    if model.n_seq_max > 1:
        held = f"each of the {model.n_seq_max} parallel sequences holds {model.n_ctx_seq} ({model.n_ctx} / {model.n_seq_max})"
    else:
        held = f"the context holds {model.n_ctx}"
    if trained and n_tokens >= trained:
        return (f"The prompt is {n_tokens} tokens but {held}, and this model was trained on at most {trained} "
                "tokens: the prompt is too long for this model. Shorten it or split it.")
    want = _next_pow2(n_tokens + 512)
    if trained:
        want = min(want, trained)  # a context beyond the trained length does not help the model
    hint = f"`%lm load --ctx {want * model.n_seq_max}`" if model.n_seq_max > 1 else f"`%lm load --ctx {want}`"
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
