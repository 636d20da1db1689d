"""A llama.cpp sampler chain for one sequence, built from ``SamplingParams``."""

from __future__ import annotations

from typing import Optional

import llama_cpp as C

from ..types import SamplingParams

PENALTY_LAST_N = 64  # tokens looked back at by repeat/presence/frequency penalties (llama.cpp's default)


class Sampler:
    """Owns one ``llama_sampler`` chain; each sequence gets its own (so seeds and penalties don't mix)."""

    def __init__(self, params: SamplingParams, n_vocab: int, vocab=None, grammar: Optional[str] = None) -> None:
        p = params
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        self._chain = chain
        self._penalties = None
        add = lambda s: C.llama_sampler_chain_add(chain, s)  # noqa: E731
        if grammar:
            # First in the chain: every later sampler only ever sees tokens the grammar allows.
            g = C.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
            if not g:
                self.close()
                raise ValueError("the grammar could not be parsed (see `%lm log` for llama.cpp's reason)")
            add(g)
        if p.repeat_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
            self._penalties = C.llama_sampler_init_penalties(
                n_vocab, PENALTY_LAST_N, p.repeat_penalty, p.frequency_penalty, p.presence_penalty
            )
            add(self._penalties)
        if p.temperature <= 0:
            add(C.llama_sampler_init_greedy())
        else:
            if p.top_k and p.top_k > 0:
                add(C.llama_sampler_init_top_k(p.top_k))
            if p.top_p < 1.0:
                add(C.llama_sampler_init_top_p(p.top_p, 1))
            if p.min_p > 0.0:
                add(C.llama_sampler_init_min_p(p.min_p, 1))
            add(C.llama_sampler_init_temp(p.temperature))
            add(C.llama_sampler_init_dist(p.seed))

    def accept_prompt(self, token: int) -> None:
        """Feed a prompt token to the penalties only (so they see the prompt, as llama.cpp's CLI
        does); a grammar must not see it, since it constrains the reply alone."""
        if self._penalties is not None:
            C.llama_sampler_accept(self._penalties, token)

    def sample(self, ctx: "C.llama_context_p", idx: int) -> int:
        """Sample from the logits of batch position ``idx`` (and accept the token)."""
        return int(C.llama_sampler_sample(self._chain, ctx, idx))

    def close(self) -> None:
        if self._chain:
            C.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:  # the chain is C memory: free it even if a caller forgot
        try:
            self.close()
        except Exception:
            pass
