"""The engine's read-only tools and its embedding model: tokens, chat rendering, next-token
scores, embeddings. Mixed into ``Engine``; each runs on the worker, queued like a generation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..errors import ContextOverflow, GenerationError, NoModelLoaded
from ..types import LoadOptions, ModelInfo
from .prompt import prompt_tokens
from .request import GenerationSpec
from .settings import resolve_load_options

if TYPE_CHECKING:
    import numpy as np


class Inspection:
    """Tokenizing, rendering, scoring and embedding, for ``Engine`` (which provides ``_call``,
    ``_require_model``, ``_reuse_prefix``, ``_forget_slot`` and the slots)."""

    def count_prompt_tokens(self, specs: list[GenerationSpec]) -> list[int]:
        """How many tokens each prompt is once rendered through the chat template (``-1``: it cannot be)."""

        def count() -> list[int]:
            model = self._require_model()
            out = []
            for spec in specs:
                try:
                    out.append(len(prompt_tokens(model, spec)))
                except Exception:  # the request itself will report why
                    out.append(-1)
            return out

        return self._call(count)

    def tokenize(self, text: str, *, special: bool = True) -> list[tuple[int, bytes, bool]]:
        """``text`` as (token id, its bytes, is a special/control token) triples.

        ``special``: read special-token text such as ``<|im_start|>`` as the one token it names
        (as the chat template does), and let the tokenizer add BOS where the model wants it.
        """

        def run() -> list[tuple[int, bytes, bool]]:
            model = self._require_model()
            ids = model.tokenize(text, add_special=special, parse_special=special)
            return [(t, model.token_bytes(t), model.is_control(t)) for t in ids]

        return self._call(run)

    def token_bytes(self, ids: list[int]) -> list[bytes]:
        """The bytes of each token id (special tokens by their text, e.g. ``<|im_end|>``).

        Raises ``ValueError`` for an id outside the vocabulary (llama.cpp would abort the process).
        """

        def run() -> list[bytes]:
            model = self._require_model()
            for t in ids:
                if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < model.n_vocab:
                    raise ValueError(f"{t!r} is not a token id of this model (0 to {model.n_vocab - 1})")
            return [model.token_bytes(t) for t in ids]

        return self._call(run)

    @property
    def n_vocab(self) -> Optional[int]:
        """The loaded model's vocabulary size (``None`` when none is loaded)."""
        model = self._model
        return model.n_vocab if model is not None else None

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text the chat template makes of ``messages`` (ready for the reply)."""
        return self._call(lambda: self._require_model().render_chat(messages))

    def next_token_logits(self, tokens: list[int], lora: Any = None) -> "np.ndarray":
        """The model's scores for the token after ``tokens``: one float32 per vocabulary entry.

        Only this position's logits are copied out. Runs on the worker between generations, in
        sequence 0's KV stream, reusing its cached prefix (stepping a prompt forward one token
        evaluates one token). ``lora``: the adapters, as a request's ``lora`` takes them.
        """

        def run() -> "np.ndarray":
            model = self._require_model()
            if not tokens:
                raise ValueError("the prompt is empty: the model needs at least one token to predict the next")
            if len(tokens) >= model.n_ctx_seq:
                raise ContextOverflow(f"The text is {len(tokens)} tokens but the context holds {model.n_ctx_seq}. "
                                      f"Shorten it, or reload with a larger context (`%lm load --ctx N`).")  # fmt: skip
            key = self._adapters.resolve(lora)  # the session's adapters unless ``lora`` chooses
            common = self._reuse_prefix(model, 0, tokens, key)  # slot 0 now holds tokens[:common]
            self._adapters.apply(model.ctx, key)
            chunk: list[int] = []
            for start in range(common, len(tokens), model.n_batch):
                chunk = tokens[start : start + model.n_batch]
                want = [start + i == len(tokens) - 1 for i in range(len(chunk))]
                rc = model.decode(chunk, [0] * len(chunk), list(range(start, start + len(chunk))), want)
                if rc != 0:
                    self._forget_slot(0)
                    raise GenerationError(f"llama_decode returned {rc}")
                self._slot_tokens[0].extend(chunk)
            return model.logits(len(chunk) - 1)

        return self._call(run)

    def slot_positions(self) -> list[int]:
        """For each sequence slot, the highest KV-cache position it holds (-1 = none)."""
        return self._call(lambda: [self._require_model().seq_pos_max(i) for i in range(len(self._slot_tokens))])

    def embed(self, texts: list[str], source: str = "auto") -> tuple["np.ndarray", int]:
        """Unit-length embeddings of ``texts`` (a float32 array, one row each) and the tokens read.

        ``source``: ``"embedder"`` the separately loaded embedding model (``load_embedder``),
        ``"chat"`` the loaded chat model (mean of its hidden states, from a second small context
        on the same weights), ``"auto"`` the embedding model when one is loaded, else the chat
        model. Runs on the worker, queued like a generation; up to 16 texts per decode call.
        """
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("embed() takes a list of strings")
        if source not in ("auto", "chat", "embedder"):
            raise ValueError(f"source={source!r}: must be 'auto', 'chat' or 'embedder'")

        return self._call(lambda: self._embedding_model(source).embed(texts))

    def count_tokens(self, texts: list[str], source: str = "auto") -> list[int]:
        """How many tokens each text is (no BOS), for the model ``embed(texts, source)`` uses."""
        return self._call(lambda: self._embedding_model(source).count_tokens(texts))

    def _embedding_model(self, source: str) -> Any:
        if source == "embedder" or (source == "auto" and self._embedder is not None):
            if self._embedder is None:
                raise NoModelLoaded("No embedding model is loaded: lmnb.load_embedder(MODEL) first.")
            return self._embedder
        return self._require_model()

    def load_embedder(self, path: str, options: Optional[LoadOptions] = None) -> ModelInfo:
        """Load a model used only for embeddings, next to the chat model (replacing the previous one)."""
        opts = resolve_load_options(options or LoadOptions())

        def do_load() -> ModelInfo:
            from .embedding import EmbeddingModel
            from .model import check_gguf_file, default_threads

            check_gguf_file(path)
            self._drop_embedder()
            self._embedder = EmbeddingModel(path, opts, opts.n_threads or default_threads())
            self.embedder_info = self._embedder.info
            return self.embedder_info

        return self._call(do_load)

    def unload_embedder(self) -> bool:
        """Free the embedding model. Returns whether one was loaded."""
        return self._call(self._drop_embedder)

    def _drop_embedder(self) -> bool:
        had, self._embedder, self.embedder_info = self._embedder, None, None
        if had is not None:
            had.close()
            from ._llama import trim_heap

            trim_heap()  # give its buffers back to the OS, as an unload does
        return had is not None
