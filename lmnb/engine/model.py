"""One llama.cpp model and its context, on llama-cpp-python's low-level bindings.

Only the engine's worker thread touches a ``LoadedModel`` (llama.cpp contexts are not
thread-safe). We use the C API directly rather than ``llama_cpp.Llama`` because we need what
``Llama`` hides: several sequences per context (``n_seq_max``, for continuous batching), an abort
callback to stop prompt evaluation, a load-progress callback, and a per-token loop without
``Llama``'s quadratic re-detokenisation.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import TYPE_CHECKING, Callable, Optional

import llama_cpp as C

if TYPE_CHECKING:
    import numpy as np

from ..errors import LoadError
from ..types import LoadOptions, ModelInfo
from . import logs
from ._llama import (
    check_gguf_file,
    fill_batch,
    free_context,
    load_model,
    logits_row,
    model_info,
    model_params,
    tokenize,
)
from .embedding import EmbeddingContext

# check_gguf_file is part of this module's face: the engine checks a path before dropping its model.
__all__ = ["CHATML_TEMPLATE", "LoadedModel", "check_gguf_file", "default_threads", "read_info"]

# Used when a GGUF file carries no chat template: ChatML is what most small instruct models speak.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def default_threads() -> int:
    """Physical cores: llama.cpp generation is memory-bound and gains nothing from SMT siblings."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:
        n = None
    return max(1, n or os.cpu_count() or 1)


def read_info(path: str) -> ModelInfo:
    """Read a GGUF file's metadata without loading its weights (a vocab-only llama.cpp load)."""
    params = C.llama_model_default_params()
    # vocab_only, not no_alloc: no_alloc aborts the process in this llama.cpp version
    params.vocab_only = True
    params.n_gpu_layers = 0
    model = load_model(path, params, "read")
    try:
        return model_info(model, path, None)
    finally:
        C.llama_model_free(model)


class LoadedModel:
    """A llama.cpp model + context + batch, created and used on one thread."""

    def __init__(
        self,
        path: str,
        opts: LoadOptions,
        n_seq_max: int = 1,
        progress: Optional[Callable[[float], bool]] = None,
        unified: bool = False,
    ) -> None:
        self.path = os.path.abspath(path)
        self.options = opts
        self.n_seq_max = n_seq_max
        self.unified = unified  # one KV cache shared by the sequences (else one stream each)
        self.model = None
        self.ctx = None
        self._batch = None
        self._first: Optional[tuple] = None  # the batch's first-entry field pointers (decode_one)
        self._embedding = None  # EmbeddingContext, made on first use

        mparams = model_params(opts)
        if progress is not None:
            # llama.cpp calls this from the loading thread; returning False cancels the load.
            def _progress(fraction: float, _user: ctypes.c_void_p) -> bool:
                try:
                    return bool(progress(float(fraction)))
                except Exception:
                    return True

            self._progress_cb = C.llama_progress_callback(_progress)
            mparams.progress_callback = self._progress_cb
        self.model = load_model(path, mparams, "load")

        try:
            self._make_context(opts.n_ctx, n_seq_max)
            self.vocab = C.llama_model_get_vocab(self.model)
            self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
            self.info = model_info(self.model, path, _read_template(opts.chat_template))
            # read once: status displays poll it from other threads, and the model may be freed
            self.weights_bytes = int(C.llama_model_size(self.model))
            self._pieces: dict[int, bytes] = {}
            self._special_pieces: dict[int, bytes] = {}
            self._eog: dict[int, bool] = {}
            self._formatter = None
            self._abort_cb = None
        except BaseException:
            self.close()
            raise

    # --- tokens -----------------------------------------------------------------------------
    def _make_context(self, n_ctx: Optional[int], n_seq_max: int) -> None:
        """Create the generation context (and its batch) for ``n_seq_max`` sequences: sharing
        ``n_ctx`` cells (``unified``), or ``n_ctx / n_seq_max`` cells each."""
        opts = self.options
        cparams = C.llama_context_default_params()
        n_train = C.llama_model_n_ctx_train(self.model)
        n_ctx = n_ctx if n_ctx and n_ctx > 0 else n_train
        cparams.n_ctx = n_ctx
        cparams.n_batch = opts.n_batch
        cparams.n_ubatch = min(opts.n_batch, 512)
        cparams.n_seq_max = n_seq_max
        # Unified: one buffer shared by all sequences, so each can use the whole context (what
        # llama-server and LM Studio do by default). Not unified (LM.batch_invariant): one stream
        # per sequence; attention then reads only the sequence's own cells, in the order it wrote
        # them, so a reply decoded in a batch is the same reply as alone. In a shared buffer the
        # cells of a sequence land wherever there is room, and llama.cpp's CPU kernels sum over
        # them in a different order (greedy replies drifted apart after a few dozen tokens in 2 of
        # 3 rows).
        cparams.kv_unified = self.unified
        threads = opts.n_threads or default_threads()
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        # on: wherever the backend has the kernel (llama.cpp's "auto"), so a model or GPU without
        # it still loads
        cparams.flash_attn_type = (
            C.LLAMA_FLASH_ATTN_TYPE_AUTO if opts.flash_attn else C.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.no_perf = True
        t0 = time.time()
        ctx = C.llama_init_from_model(self.model, cparams)
        if not ctx:
            reasons = logs.LOGS.errors_since(t0)
            raise LoadError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {self.path}: "
                + ("; ".join(reasons[-3:]) or "out of memory?")
                + " Try a smaller --ctx."
            )
        self.ctx = ctx
        self.n_seq_max = n_seq_max
        self.n_ctx = C.llama_n_ctx(ctx)
        self.n_ctx_seq = C.llama_n_ctx_seq(ctx)  # the cells one sequence can use
        self.n_batch = C.llama_n_batch(ctx)
        self.n_threads = threads
        self.memory = C.llama_get_memory(ctx)
        self._batch = b = C.llama_batch_init(max(self.n_batch, n_seq_max), 0, 1)
        # the first entry's fields, for decode_one (each ``b.token`` makes a new ctypes pointer)
        self._first = (b.token, b.pos, b.n_seq_id, b.seq_id[0], b.logits)

    def resize(self, n_ctx: int, n_seq_max: int) -> None:
        """Recreate the context with room for ``n_seq_max`` sequences in ``n_ctx`` cells (the
        weights stay loaded; the KV cache starts empty). On failure the old size is restored."""
        old = (self.n_ctx, self.n_seq_max)
        self._free_context()
        try:
            self._make_context(n_ctx, n_seq_max)
        except LoadError:
            self._make_context(*old)
            raise

    def _free_context(self) -> None:
        free_context(self.ctx, self._batch)
        self.ctx, self._batch, self._first = None, None, None

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return tokenize(self.vocab, text, add_special, parse_special)

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (memoised: generation asks for the same few thousand again and again).

        ``special``: control tokens by their text (``[TOOL_CALLS]``, ``<|channel|>``) instead of nothing,
        for replies whose tool calls or reasoning are marked with them."""
        cache = self._special_pieces if special else self._pieces
        p = cache.get(token)
        if p is None:
            buf = ctypes.create_string_buffer(64)
            n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            p = buf.raw[:n]
            cache[token] = p
        return p

    def token_bytes(self, token: int) -> bytes:
        """A token's bytes as shown to a reader: special tokens (``<|im_start|>``) by their text."""
        if self.is_control(token):
            return self._token_text(token).encode("utf-8")
        return self.piece(token)

    def is_control(self, token: int) -> bool:
        return bool(C.llama_vocab_is_control(self.vocab, token))

    def logits(self, idx: int) -> "np.ndarray":
        """A copy of the logits at batch position ``idx`` of the last decode (n_vocab float32)."""
        return logits_row(self.ctx, idx, self.n_vocab).copy()

    def is_eog(self, token: int) -> bool:
        # memoised: asked once per generated token, and each ctypes call lets another thread take
        # the GIL (a stream's reader), which costs the decode loop more than the call itself
        e = self._eog.get(token)
        if e is None:
            e = self._eog[token] = bool(C.llama_vocab_is_eog(self.vocab, token))
        return e

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        t = C.llama_vocab_get_text(self.vocab, token)
        return t.decode("utf-8", errors="replace") if t else ""

    # --- chat template ----------------------------------------------------------------------
    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True,
                    tools: Optional[list[dict]] = None, **template_kwargs: object) -> str:  # fmt: skip
        """Messages (and tools, for templates that render them) -> prompt text, through the GGUF's
        Jinja chat template (or the override)."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = self.info.chat_template or CHATML_TEMPLATE
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=self._token_text(C.llama_vocab_eos(self.vocab)),
                bos_token=self._token_text(C.llama_vocab_bos(self.vocab)),
                add_generation_prompt=add_generation_prompt,
            )
        try:
            return self._formatter(messages=messages, tools=tools or None, **template_kwargs).prompt
        except Exception as e:
            raise ValueError(f"the model's chat template failed on these messages: {e}") from None

    # --- decoding ---------------------------------------------------------------------------
    def decode(
        self,
        tokens: list[int],
        seq_ids: list[int],
        positions: list[int],
        logits: list[bool],
        abort: Optional[Callable[[], bool]] = None,
    ) -> int:
        """Evaluate one batch. Returns llama_decode's code (0 ok, 1 no KV room, 2 aborted, <0 error)."""
        b = self._batch
        fill_batch(b, tokens, seq_ids, positions, logits)
        if abort is None:
            return C.llama_decode(self.ctx, b)
        # The abort callback runs once per graph node, so it is installed only around long prompt
        # chunks (where a Stop must not wait seconds), never on the per-token path.
        cb = C.ggml_abort_callback(lambda _data: bool(abort()))
        self._abort_cb = cb
        C.llama_set_abort_callback(self.ctx, cb, None)
        try:
            return C.llama_decode(self.ctx, b)
        finally:
            C.llama_set_abort_callback(self.ctx, C.ggml_abort_callback(), None)

    def decode_one(self, token: int, seq: int, pos: int) -> int:
        """``decode`` of one token that wants its logits: a single stream's step, without the lists."""
        tokens, positions, n_seq_ids, seq_ids, wants = self._first
        tokens[0], positions[0], n_seq_ids[0], seq_ids[0], wants[0] = token, pos, 1, seq, True
        b = self._batch
        b.n_tokens = 1
        return C.llama_decode(self.ctx, b)

    def logprob_entry(self, idx: int, token: int, top: int) -> dict:
        """OpenAI-style logprob entry for ``token`` at batch position ``idx``: the model's own
        distribution (log-softmax of the raw logits, before temperature and filters), with the
        ``top`` most likely alternatives. Only this position's logits are read, never n_ctx x n_vocab."""
        import numpy as np

        logits = logits_row(self.ctx, idx, self.n_vocab).astype(np.float64)
        m = logits.max()
        logz = m + np.log(np.exp(logits - m).sum())

        def one(t: int) -> dict:
            b = self.piece(t)
            return {"token": b.decode("utf-8", errors="replace"), "logprob": float(logits[t] - logz), "bytes": list(b)}

        entry = one(token)
        if top > 0:
            best = np.argpartition(-logits, top)[:top]
            best = best[np.argsort(-logits[best])]
            entry["top_logprobs"] = [one(int(t)) for t in best]
        else:
            entry["top_logprobs"] = []
        return entry

    def embed(self, texts: list[str]) -> tuple["np.ndarray", int]:
        """Unit-length embeddings of ``texts`` (and the tokens read), from a second context on the
        same weights, made on first use."""
        if self._embedding is None:
            self._embedding = EmbeddingContext(self.model, self.n_threads, self.info.name)
        return self._embedding.embed(texts)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self.tokenize(t, add_special=False, parse_special=False)) for t in texts]

    def seq_rm(self, seq: int, p0: int, p1: int = -1) -> bool:
        return bool(C.llama_memory_seq_rm(self.memory, seq, p0, p1))

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Give sequence ``dst`` the first ``n`` cached positions of ``src`` (what it held is dropped).

        Each sequence has its own KV stream, and llama.cpp copies between streams only whole
        (a partial range aborts the process), so the whole stream is copied and the tail cut.
        """
        C.llama_memory_seq_rm(self.memory, dst, 0, -1)
        C.llama_memory_seq_cp(self.memory, src, dst, 0, -1)
        C.llama_memory_seq_rm(self.memory, dst, n, -1)

    def seq_pos_max(self, seq: int) -> int:
        """The highest position ``seq`` holds in the KV cache (-1: none)."""
        return int(C.llama_memory_seq_pos_max(self.memory, seq))

    def close(self) -> None:
        """Free the contexts, then the model (idempotent)."""
        if self._embedding is not None:
            self._embedding.close()
            self._embedding = None
        self._free_context()
        if self.model:
            C.llama_model_free(self.model)
            self.model = None
        self._formatter = None


def _read_template(value: Optional[str]) -> Optional[str]:
    """A chat-template override may be given inline or as a path to a .jinja file."""
    if not value:
        return None
    if "{%" not in value and "{{" not in value and os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            return f.read()
    return value
