"""Text embeddings: pooled, unit-length vectors from a model's hidden states, several texts per
``llama_decode`` call.

Two sources share this code: the loaded chat model (a second, small context on its weights, so
nothing is loaded twice) and a model loaded only for embeddings (``EmbeddingModel``), such as a
dedicated embedding GGUF, kept next to the chat model. Only the engine's worker thread calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import llama_cpp as C

from ._llama import fill_batch, free_context, load_model, meta, model_info, model_params, tokenize

if TYPE_CHECKING:
    import numpy as np

    from ..types import LoadOptions, ModelInfo

MAX_SEQS = 16  # texts per decode call
MAX_TOKENS = 2048  # the longest text (pooling needs a whole text in one ubatch)
# Texts are packed into one call up to this many tokens (a longer text goes alone): the texts of
# a call attend over all its cells, masked, so the cost grows with the square of the call's size.
# On 2 cores, 4 x 256 tokens embed at ~160 tokens/s and 8 x 256 at ~130 (SmolLM2-135M).
GROUP_TOKENS = 1024


class EmbeddingContext:
    """A llama.cpp embeddings context on ``model``'s weights (which it does not own)."""

    def __init__(self, model: Any, n_threads: int, name: str) -> None:
        self.model = model
        self.vocab = C.llama_model_get_vocab(model)
        cp = C.llama_context_default_params()
        cp.embeddings = True
        arch = meta(model, "general.architecture") or ""
        # Embedding models say how to pool (mean, CLS, last token) in their header; a chat model
        # does not, and the mean of its hidden states is the usual choice.
        has_own = meta(model, f"{arch}.pooling_type") is not None
        cp.pooling_type = C.LLAMA_POOLING_TYPE_UNSPECIFIED if has_own else C.LLAMA_POOLING_TYPE_MEAN
        n = min(C.llama_model_n_ctx_train(model) or MAX_TOKENS, MAX_TOKENS)
        cp.n_ctx = cp.n_batch = cp.n_ubatch = n
        cp.n_seq_max = MAX_SEQS
        cp.kv_unified = True  # texts of any length share one call's cells
        cp.n_threads = cp.n_threads_batch = n_threads
        cp.no_perf = True
        self.ctx = C.llama_init_from_model(model, cp)
        if not self.ctx:
            raise ValueError(f"{name} cannot produce embeddings (llama.cpp refused an embeddings context)")
        self.limit = C.llama_n_batch(self.ctx)
        self.n_embd = C.llama_model_n_embd(model)
        self._batch = C.llama_batch_init(self.limit, 0, 1)

    def embed(self, texts: list[str]) -> tuple["np.ndarray", int]:
        """One unit-length float32 row per text, and the number of tokens read."""
        import numpy as np

        toks = [tokenize(self.vocab, t, add_special=True, parse_special=False) for t in texts]
        for i, t in enumerate(toks):
            if not t:
                raise ValueError(f"input[{i}] is empty")
            if len(t) > self.limit:
                raise ValueError(f"input[{i}] is {len(t)} tokens; embeddings take at most {self.limit}")
        out = np.empty((len(texts), self.n_embd), dtype=np.float32)
        memory = C.llama_get_memory(self.ctx)  # encoder-only models (BERT) keep no cache
        i = 0
        while i < len(toks):
            group, total = [], 0
            while i < len(toks) and len(group) < MAX_SEQS and (not group or total + len(toks[i]) <= GROUP_TOKENS):
                group.append(i)
                total += len(toks[i])
                i += 1
            flat, seqs, pos = [], [], []
            for s, idx in enumerate(group):
                flat += toks[idx]
                seqs += [s] * len(toks[idx])
                pos += range(len(toks[idx]))
            fill_batch(self._batch, flat, seqs, pos, [True] * len(flat))
            if memory:
                C.llama_memory_clear(memory, True)
            if C.llama_decode(self.ctx, self._batch) != 0:
                raise ValueError(f"llama.cpp could not embed input[{group[0]}:{group[-1] + 1}]")
            for s, idx in enumerate(group):
                ptr = C.llama_get_embeddings_seq(self.ctx, s)
                if not ptr:
                    raise ValueError("this model gives no pooled embeddings")
                v = np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).astype(np.float64)
                norm = np.linalg.norm(v)
                out[idx] = v / norm if norm else v
        return out, sum(len(t) for t in toks)

    def close(self) -> None:
        free_context(self.ctx, self._batch)
        self.ctx, self._batch = None, None


class EmbeddingModel:
    """A GGUF model loaded only for embeddings (its own weights and context), beside the chat model."""

    def __init__(self, path: str, opts: "LoadOptions", n_threads: int) -> None:
        self.model = load_model(path, model_params(opts), "load")
        self.context = None
        try:
            self.info: ModelInfo = model_info(self.model, path, None)
            self.context = EmbeddingContext(self.model, n_threads, self.info.name)
            self.weights_bytes = int(C.llama_model_size(self.model))
        except BaseException:
            self.close()
            raise

    def embed(self, texts: list[str]) -> tuple["np.ndarray", int]:
        return self.context.embed(texts)

    def count_tokens(self, texts: list[str]) -> list[int]:
        vocab = self.context.vocab
        return [len(tokenize(vocab, t, add_special=False, parse_special=False)) for t in texts]

    def close(self) -> None:
        if self.context is not None:
            self.context.close()
            self.context = None
        if self.model:
            C.llama_model_free(self.model)
            self.model = None
