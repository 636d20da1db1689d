"""A llama.cpp sampler chain for one sequence, built from ``SamplingParams``.

The chain follows llama.cpp's own common sampler (``common/sampling.cpp``, ``common_sampler_init``)::

    logit bias -> penalties -> DRY -> top-n-sigma -> top-k -> typical -> top-p -> min-p -> XTC
               -> temperature -> dist

with ``mirostat`` 1 or 2 ``... DRY -> temperature -> mirostat`` instead of the truncation samplers,
and ``temperature <= 0`` ``... DRY -> greedy`` (the truncation samplers are kept only where they can
change the most likely token: typical and XTC). Logit bias, penalties and DRY apply in every mode.
"""

from __future__ import annotations

import ctypes
from typing import Iterable, Optional

import llama_cpp as C

from ..params import check_logit_bias
from ..types import SamplingParams
from ._llama import logits_row

PENALTY_LAST_N = 64  # tokens looked back at by repeat/presence/frequency penalties (llama.cpp's default)
DRY_SEQUENCE_BREAKERS = ("\n", ":", '"', "*")  # llama.cpp's defaults: a repetition never spans these
DRY_DEFAULT_WINDOW = 4096  # dry_penalty_last_n=-1 ("the context") when the caller gives no n_ctx
MIROSTAT_M = 100  # tokens mirostat v1 estimates s_hat from (the paper's and llama.cpp's value)
_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp draws a fresh random seed for this value


def seed32(seed: Optional[int]) -> int:
    """The 32-bit seed llama.cpp gets for a request's ``seed`` (any int64): its low 32 bits.

    ``0xFFFFFFFF`` means "a random seed" to llama.cpp, so a seed whose low bits are all ones is
    moved next door, to stay reproducible. ``None``: a random seed.
    """
    if seed is None:
        return _RANDOM_SEED
    s = int(seed) & 0xFFFFFFFF
    return s - 1 if s == _RANDOM_SEED else s


class Sampler:
    """Owns one ``llama_sampler`` chain; each sequence gets its own (so seeds and penalties don't mix).

    A grammar is kept out of the chain. Checking it against every token of the vocabulary at each
    step costs ~100 ms with a 49k vocabulary; instead the chain picks a token as if there were no
    grammar, the grammar checks just that token, and only when it refuses is the step sampled
    again over the tokens the grammar allows (what llama.cpp's own common sampler does). The
    result is the same as grammar-first: the resample draws from the allowed set.

    The resample itself first looks only among the ``n`` most likely tokens (``NARROW`` tiers)
    when that cannot change the result. The penalties, DRY and a negative logit bias only lower
    logits, so a token outside those ``n`` ends at most at the ``n``-th raw logit: when at least
    ``need`` allowed tokens are above it after those filters, they are the best allowed tokens of
    the whole vocabulary. Greedy decoding needs one; a chain with ``top_k = K`` needs K (top-k
    then keeps the same K tokens). What looks at, or raises, the whole vocabulary turns this off:
    a positive bias, negative penalties, top-n-sigma, mirostat.

    ``n_ctx``: the sequence's context length, the window of ``dry_penalty_last_n=-1``
    (``DRY_DEFAULT_WINDOW`` when not given).
    """

    def __init__(
        self,
        params: SamplingParams,
        n_vocab: int,
        vocab=None,
        grammar: Optional[str] = None,
        n_ctx: Optional[int] = None,
    ) -> None:
        p = params
        self._chain = None
        self._grammar = None
        self._penalties = None  # borrowed pointers into the chain (it owns and frees them)
        self._bias = None
        self._dry = None
        self.n_vocab = n_vocab
        self.resampled = 0  # steps where the grammar refused the first pick (for tests and tuning)
        self.narrowed = 0  # resamples settled among the most likely tokens (NARROW), not the whole vocabulary
        self.dry_window = 0  # tokens DRY looks back at (0: DRY off)
        self._argmax = False  # plain greedy: the logits' argmax, read without the chain (see sample)
        bias = check_logit_bias(p.logit_bias, n_vocab)  # before any C allocation: may raise
        seed = seed32(p.seed)

        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        self._chain = chain
        add = lambda s: C.llama_sampler_chain_add(chain, s)  # noqa: E731  (the chain takes ownership)
        try:
            if grammar:
                g = C.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
                if not g:
                    raise ValueError("the grammar could not be parsed (see `%lm log` for llama.cpp's reason)")
                self._grammar = g
                self._init_candidates()
                self._need = _narrow_need(p, bias)

            # 1. logit bias: the user's, plus the tokens the model file says never to emit (as llama.cpp)
            entries = list(bias.items()) + [(t, float("-inf")) for t in self._suppressed(vocab)]
            if entries:
                arr = (C.llama_logit_bias * len(entries))(*[C.llama_logit_bias(t, b) for t, b in entries])
                self._bias = C.llama_sampler_init_logit_bias(n_vocab, len(entries), arr)  # copies the array
                add(self._bias)

            # 2. repeat / frequency / presence penalties
            if p.repeat_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
                self._penalties = C.llama_sampler_init_penalties(
                    n_vocab, PENALTY_LAST_N, p.repeat_penalty, p.frequency_penalty, p.presence_penalty
                )
                add(self._penalties)

            # 3. DRY
            if p.dry_multiplier and p.dry_multiplier > 0 and p.dry_penalty_last_n != 0:
                last_n = p.dry_penalty_last_n
                if last_n is None or last_n < 0:  # -1: the context (llama.cpp itself reads -1 as "off")
                    last_n = n_ctx if n_ctx and n_ctx > 0 else DRY_DEFAULT_WINDOW
                breakers = DRY_SEQUENCE_BREAKERS if vocab is not None else ()  # tokenized with the vocab
                c_breakers = (ctypes.c_char_p * max(len(breakers), 1))(*[b.encode("utf-8") for b in breakers])
                self._dry = C.llama_sampler_init_dry(
                    vocab, p.dry_multiplier, p.dry_base, p.dry_allowed_length, last_n, c_breakers, len(breakers)
                )  # copies the strings
                add(self._dry)
                self.dry_window = last_n

            # 4. pick a token
            if p.temperature <= 0:
                # greedy; typical and XTC may drop the most likely token, so they still apply (as in
                # llama.cpp, whose temperature 0 keeps the best of what the filters left)
                filtered = not p.mirostat and (p.typical_p < 1.0 or _xtc_on(p))
                if filtered:
                    self._add_truncation(add, p, seed)
                add(C.llama_sampler_init_greedy())
                self._argmax = not (filtered or grammar or entries or self._penalties or self._dry)
            elif p.mirostat == 1:
                add(C.llama_sampler_init_temp(p.temperature))
                add(C.llama_sampler_init_mirostat(n_vocab, seed, p.mirostat_tau, p.mirostat_eta, MIROSTAT_M))
            elif p.mirostat == 2:
                add(C.llama_sampler_init_temp(p.temperature))
                add(C.llama_sampler_init_mirostat_v2(seed, p.mirostat_tau, p.mirostat_eta))
            else:
                self._add_truncation(add, p, seed)
                add(C.llama_sampler_init_temp(p.temperature))
                add(C.llama_sampler_init_dist(seed))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _add_truncation(add, p: SamplingParams, seed: int) -> None:
        """top-n-sigma, top-k, typical, top-p, min-p, XTC: llama.cpp's default order."""
        if p.top_n_sigma is not None and p.top_n_sigma >= 0:
            # n = 0 keeps only the best logit, as documented (llama.cpp would read 0 as "off")
            add(C.llama_sampler_init_top_n_sigma(p.top_n_sigma) if p.top_n_sigma > 0 else C.llama_sampler_init_top_k(1))
        if p.top_k and p.top_k > 0:
            add(C.llama_sampler_init_top_k(p.top_k))
        if p.typical_p is not None and p.typical_p < 1.0:
            add(C.llama_sampler_init_typical(p.typical_p, 1))
        if p.top_p < 1.0:
            add(C.llama_sampler_init_top_p(p.top_p, 1))
        if p.min_p > 0.0:
            add(C.llama_sampler_init_min_p(p.min_p, 1))
        if _xtc_on(p):
            add(C.llama_sampler_init_xtc(p.xtc_probability, p.xtc_threshold, 1, seed))

    @staticmethod
    def _suppressed(vocab) -> list[int]:
        """The model's suppress tokens (GGUF ``tokenizer.ggml.suppress_tokens``); usually none."""
        if vocab is None or not hasattr(C, "llama_vocab_get_suppress_tokens"):
            return []
        n = ctypes.c_int32(0)
        ptr = C.llama_vocab_get_suppress_tokens(vocab, ctypes.byref(n))
        return [int(ptr[i]) for i in range(n.value)] if ptr and n.value > 0 else []

    def accept_prompt(self, token: int) -> None:
        """Feed a prompt token to the penalties and DRY only (so they see the prompt, as llama.cpp's
        server does); a grammar must not see it, since it constrains the reply alone."""
        if self._penalties is not None:
            C.llama_sampler_accept(self._penalties, token)
        if self._dry is not None:
            C.llama_sampler_accept(self._dry, token)

    def accept_prompt_tokens(self, tokens: Iterable[int]) -> None:
        """Feed a whole prompt: the penalties see its last ``PENALTY_LAST_N`` tokens, DRY the last
        ``dry_window`` (the rest would fall out of their windows anyway)."""
        tokens = list(tokens)
        if self._penalties is not None:
            for t in tokens[-PENALTY_LAST_N:]:
                C.llama_sampler_accept(self._penalties, t)
        if self._dry is not None and self.dry_window > 0:
            for t in tokens[-self.dry_window :]:
                C.llama_sampler_accept(self._dry, t)

    def sample(self, ctx: "C.llama_context_p", idx: int) -> int:
        """Sample from the logits of batch position ``idx`` (and accept the token)."""
        if self._argmax:
            # llama_sampler_sample would copy all n_vocab logits into a candidate array first
            # (~0.2 ms a token, ~1% of single-stream speed on a small model); the greedy sampler
            # keeps no state and takes the first maximum, as argmax does.
            return int(logits_row(ctx, idx, self.n_vocab).argmax())
        if self._grammar is None:
            return int(C.llama_sampler_sample(self._chain, ctx, idx))
        tok = self._pick(ctx, idx, with_grammar=False)
        if not self._allowed(tok):
            self.resampled += 1
            tok = self._pick_narrow(ctx, idx)
            if tok < 0:
                tok = self._pick(ctx, idx, with_grammar=True)
        C.llama_sampler_accept(self._grammar, tok)
        C.llama_sampler_accept(self._chain, tok)
        return tok

    def accept_forced(self, tok: int) -> bool:
        """Take a token the engine puts in without sampling; False (nothing taken) if the grammar refuses it."""
        if self._grammar is not None:
            if not self._allowed(tok):
                return False
            C.llama_sampler_accept(self._grammar, tok)
        C.llama_sampler_accept(self._chain, tok)
        return True

    # --- grammar path -------------------------------------------------------------------------
    def _init_candidates(self) -> None:
        import numpy as np

        self._np = np
        self._buf = np.empty(self.n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._one = (C.llama_token_data * 1)()

    def _pick(self, ctx: "C.llama_context_p", idx: int, with_grammar: bool) -> int:
        buf = self._buf
        logits = logits_row(ctx, idx, self.n_vocab)
        buf["id"] = self._ids  # the chain sorts and truncates the array in place: refill it each time
        buf["logit"] = logits
        buf["p"] = 0.0
        arr = C.llama_token_data_array(
            data=buf.ctypes.data_as(C.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False
        )
        if with_grammar:
            C.llama_sampler_apply(self._grammar, ctypes.byref(arr))
        C.llama_sampler_apply(self._chain, ctypes.byref(arr))
        if not 0 <= arr.selected < arr.size:
            raise RuntimeError("the sampler chain selected no token")
        # read through arr.data, not buf: XTC drops the top choices by moving the data pointer on
        return int(arr.data[arr.selected].id)

    def _pick_narrow(self, ctx: "C.llama_context_p", idx: int) -> int:
        """The resample among the most likely tokens, or -1 when that could differ from the whole
        vocabulary's (see the class docstring)."""
        if not self._need:
            return -1
        np = self._np
        logits = logits_row(ctx, idx, self.n_vocab)
        for n in NARROW:
            if n >= self.n_vocab:
                return -1
            top = np.argpartition(logits, -n)[-n:]
            sub = self._buf[:n]
            sub["id"] = top
            sub["logit"] = logits[top]
            sub["p"] = 0.0
            floor = sub["logit"].min()  # the best any token outside these can reach
            lowered = sub.copy()  # the logits after the filters that only lower them
            for smp in (self._bias, self._penalties, self._dry):
                if smp is not None:
                    C.llama_sampler_apply(smp, ctypes.byref(_as_array(lowered)))
            arr = _as_array(sub)
            C.llama_sampler_apply(self._grammar, ctypes.byref(arr))
            allowed = sub["logit"] != -np.inf
            if np.count_nonzero(allowed & (lowered["logit"] > floor)) >= self._need:
                C.llama_sampler_apply(self._chain, ctypes.byref(arr))
                if not 0 <= arr.selected < arr.size:
                    raise RuntimeError("the sampler chain selected no token")
                self.narrowed += 1
                return int(arr.data[arr.selected].id)
        return -1

    def _allowed(self, tok: int) -> bool:
        one = self._one
        one[0].id, one[0].logit, one[0].p = tok, 1.0, 0.0
        arr = C.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
        C.llama_sampler_apply(self._grammar, ctypes.byref(arr))
        return one[0].logit != float("-inf")

    def close(self) -> None:
        self._penalties = self._dry = self._bias = None  # owned by the chain
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


NARROW = (256, 4096)  # how many of the most likely tokens a grammar's resample looks at first


def _as_array(buf) -> "C.llama_token_data_array":
    return C.llama_token_data_array(data=buf.ctypes.data_as(C.llama_token_data_p), size=len(buf), selected=-1,
                                    sorted=False)  # fmt: skip


def _narrow_need(p: SamplingParams, bias: dict) -> int:
    """How many allowed tokens among the most likely make a narrowed resample exact; 0: never."""
    if any(b > 0 for b in bias.values()) or p.mirostat:
        return 0  # a token from below could rise to the top
    if p.repeat_penalty < 1.0 or (p.presence_penalty or 0) < 0 or (p.frequency_penalty or 0) < 0:
        return 0  # penalties that raise the logits of tokens seen before
    if p.temperature <= 0:
        return 0 if (p.typical_p is not None and p.typical_p < 1.0) or _xtc_on(p) else 1
    if p.top_n_sigma is not None and p.top_n_sigma >= 0:
        return 0  # measured against all the logits
    return p.top_k if p.top_k and p.top_k > 0 else 0


def _xtc_on(p: SamplingParams) -> bool:
    # llama.cpp's XTC does nothing above a threshold of 0.5 (two tokens cannot both be that likely)
    return bool(p.xtc_probability and p.xtc_probability > 0 and p.xtc_threshold is not None and p.xtc_threshold <= 0.5)
