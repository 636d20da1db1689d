"""A llama.cpp sampler chain for one sequence, built from ``SamplingParams``."""

from __future__ import annotations

import ctypes
from typing import Optional

import llama_cpp as C

from ..types import SamplingParams

PENALTY_LAST_N = 64  # tokens looked back at by repeat/presence/frequency penalties (llama.cpp's default)


class Sampler:
    """Owns one ``llama_sampler`` chain; each sequence gets its own (so seeds and penalties don't mix).

    A grammar is kept out of the chain. Checking it against every token of the vocabulary at each
    step costs ~100 ms with a 49k vocabulary; instead the chain picks a token as if there were no
    grammar, the grammar checks just that token, and only when it refuses is the step sampled
    again over the tokens the grammar allows (what llama.cpp's own common sampler does). The
    result is the same as grammar-first: the resample draws from the allowed set.
    """

    def __init__(self, params: SamplingParams, n_vocab: int, vocab=None, grammar: Optional[str] = None) -> None:
        p = params
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        self._chain = chain
        self._penalties = None
        self._grammar = None
        self.n_vocab = n_vocab
        self.resampled = 0  # steps where the grammar refused the first pick (for tests and tuning)
        add = lambda s: C.llama_sampler_chain_add(chain, s)  # noqa: E731
        if grammar:
            g = C.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
            if not g:
                self.close()
                raise ValueError("the grammar could not be parsed (see `%lm log` for llama.cpp's reason)")
            self._grammar = g
            self._init_candidates()
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
        if self._grammar is None:
            return int(C.llama_sampler_sample(self._chain, ctx, idx))
        tok = self._pick(ctx, idx, with_grammar=False)
        if not self._allowed(tok):
            self.resampled += 1
            tok = self._pick(ctx, idx, with_grammar=True)
        C.llama_sampler_accept(self._grammar, tok)
        C.llama_sampler_accept(self._chain, tok)
        return tok

    # --- grammar path -------------------------------------------------------------------------
    def _init_candidates(self) -> None:
        import numpy as np

        self._np = np
        self._buf = np.empty(self.n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._one = (C.llama_token_data * 1)()

    def _pick(self, ctx: "C.llama_context_p", idx: int, with_grammar: bool) -> int:
        np, buf = self._np, self._buf
        logits = np.ctypeslib.as_array(C.llama_get_logits_ith(ctx, idx), shape=(self.n_vocab,))
        buf["id"] = self._ids  # the chain sorts and truncates the array in place: refill it each time
        buf["logit"] = logits
        buf["p"] = 0.0
        arr = C.llama_token_data_array(
            data=buf.ctypes.data_as(C.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False
        )
        if with_grammar:
            C.llama_sampler_apply(self._grammar, ctypes.byref(arr))
        C.llama_sampler_apply(self._chain, ctypes.byref(arr))
        if arr.selected < 0:
            raise RuntimeError("the sampler chain selected no token")
        return int(buf["id"][arr.selected])

    def _allowed(self, tok: int) -> bool:
        one = self._one
        one[0].id, one[0].logit, one[0].p = tok, 1.0, 0.0
        arr = C.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
        C.llama_sampler_apply(self._grammar, ctypes.byref(arr))
        return one[0].logit != float("-inf")

    def close(self) -> None:
        if self._chain:
            C.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar:
            C.llama_sampler_free(self._grammar)
            self._grammar = None

    def __del__(self) -> None:  # the chain is C memory: free it even if a caller forgot
        try:
            self.close()
        except Exception:
            pass
