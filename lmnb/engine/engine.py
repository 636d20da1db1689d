"""The engine: one worker thread owns the llama.cpp model and context; everyone else submits.

Cells, widgets and HTTP handlers call ``Engine.submit`` from any thread and get a ``Request``
handle back. The worker takes work strictly in arrival order from one FIFO queue. Generation
is a loop of *steps*: each step packs the pending work of every active sequence (a prompt chunk
or one new token) into one ``llama_decode`` call, then samples a token for each sequence that
produced logits. With ``n_parallel == 1`` that is the classic one-request-at-a-time loop; with
more slots the same loop is continuous batching, and no caller changes.

Loads and unloads are queued like generations, so they never race a running decode: a load
waits for the active requests to finish, and requests that arrive after it wait for the load.
"""

from __future__ import annotations

import codecs
import concurrent.futures
import dataclasses
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from ..errors import ContextOverflow, GenerationError, LoadError, NoModelLoaded
from ..types import (
    Completion,
    LoadOptions,
    ModelInfo,
    SamplingParams,
    Status,
    Timings,
    Usage,
)
from .request import GenerationSpec, Request, Stage

if TYPE_CHECKING:
    import numpy as np

# Prompt chunks at least this long are decoded with llama.cpp's abort callback armed, so that a
# cancel stops prompt evaluation mid-chunk instead of after it.
_ABORTABLE_CHUNK = 32


@dataclass
class _Seq:
    """Worker-side state of one active request."""

    req: Request
    slot: int
    sampler: Any
    params: SamplingParams
    prompt: list[int]
    pending: list[int]  # prompt tokens not yet in the KV cache
    n_cached: int
    t_admit: float
    stops: list[str]
    max_tokens: int
    generated: list[int] = field(default_factory=list)
    last_token: int = -1
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    held: str = ""  # decoded text not yet emitted (it could be the start of a stop string)
    text: str = ""  # emitted text
    t_prompt_done: float = 0.0
    t_first: float = 0.0

    @property
    def prefilling(self) -> bool:
        return bool(self.pending)


class Engine:
    """Owns the model; serves requests from any thread. Use ``lmnb.get_engine()`` for the shared one."""

    def __init__(self, n_parallel: int = 1, name: str = "default") -> None:
        self.name = name  # the registry's name for this model ("default" for the default model)
        self.n_parallel = n_parallel
        self._queue: "queue.Queue[tuple]" = queue.Queue()
        self._model = None  # LoadedModel, touched only by the worker
        self._info: Optional[ModelInfo] = None
        self._options: Optional[LoadOptions] = None
        self._active: list[_Seq] = []
        self._slot_tokens: list[list[int]] = []  # what each sequence id holds in the KV cache
        self._held_call: Optional[tuple] = None
        self._embedder = None  # EmbeddingModel, touched only by the worker
        self.embedder_info: Optional[ModelInfo] = None
        self.loading: Optional[tuple[str, float]] = None  # (model, fraction) while a load runs
        self._stopping = False
        self._lock = threading.Lock()
        self.requests_served = 0
        # monotonically increasing counters, exported by the server's /metrics
        self.stats: dict[str, int] = dict.fromkeys(
            ("prompt_tokens", "prompt_tokens_evaluated", "generated_tokens", "decode_calls", "decoded_tokens",
             "sequences_decoded", "requests_stop", "requests_length", "requests_cancelled", "requests_error",
             "prefix_tokens_shared"), 0)
        self.last_tokens_per_s: Optional[float] = None
        # every token sampled, counted as it is generated (stats counts a request when it ends):
        # monitors take its rate for the current tokens/s
        self.tokens_generated = 0
        # called with the new ModelInfo after a load, None after an unload (widgets, status bar)
        self.model_listeners: list[Callable[[Optional[ModelInfo]], None]] = []
        self.last_activity = time.monotonic()  # last submit or finished request (idle unload)
        thread_name = "lmnb-engine" if name == "default" else f"lmnb-engine-{name}"
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------
    # Public API (any thread)
    # ------------------------------------------------------------------------------------------
    @property
    def info(self) -> Optional[ModelInfo]:
        """The loaded model's info, or ``None``."""
        return self._info

    @property
    def loaded(self) -> bool:
        return self._info is not None

    def load(
        self,
        path: str,
        options: Optional[LoadOptions] = None,
        progress: Optional[Callable[[float], None]] = None,
    ) -> ModelInfo:
        """Load a GGUF file, replacing the current model. Blocks until loaded; Ctrl-C cancels."""
        opts = _resolve_load_options(options or LoadOptions())
        cancel = threading.Event()
        name = os.path.splitext(os.path.basename(path))[0]

        def on_progress(fraction: float) -> bool:
            self.loading = (name, fraction)
            if progress is not None:
                try:
                    progress(fraction)
                except Exception:
                    pass
            return not cancel.is_set()

        def do_load() -> ModelInfo:
            from .model import LoadedModel, check_gguf_file

            check_gguf_file(path)  # fail before dropping the current model
            self._drop_model()
            self.n_parallel = opts.n_parallel
            model = LoadedModel(path, opts, n_seq_max=self.n_parallel, progress=on_progress)
            self._model = model
            self._slot_tokens = [[] for _ in range(self.n_parallel)]
            # report what llama.cpp actually chose (n_ctx=0 -> trained length, threads=0 -> cores)
            self._options = dataclasses.replace(opts, n_ctx=model.n_ctx, n_threads=model.n_threads)
            self._info = model.info
            self.last_tokens_per_s = None
            return model.info

        self.loading = (name, 0.0)
        try:
            info = self._call(do_load)
            self.loading = None  # before the listeners run: they read the state
            self._model_changed(info)
            return info
        except KeyboardInterrupt:
            cancel.set()
            raise
        except LoadError as e:
            if self._info is None:  # the old model was dropped before the new one failed
                self._model_changed(None)
            if cancel.is_set() or "cancel" in str(e).lower():
                raise LoadError(f"Loading {path} was cancelled.") from None
            raise
        finally:
            self.loading = None

    def unload(self) -> bool:
        """Free the model and its context. Returns whether a model was loaded."""
        had = self._call(self._drop_model)
        if had:
            self._model_changed(None)
        return had

    def _model_changed(self, info: Optional[ModelInfo]) -> None:
        for listener in list(self.model_listeners):
            try:
                listener(info)
            except Exception:  # a broken widget must not break loading
                pass

    def resize(self, n_ctx: Optional[int] = None, n_parallel: Optional[int] = None) -> None:
        """Give the loaded model's context ``n_ctx`` cells for ``n_parallel`` sequences (``n_ctx / n_parallel`` each).

        Only the context is recreated (about 0.1 s; the weights stay loaded, the KV cache starts
        empty). Queued like a load: it waits for the running requests. ``lmnb.map`` uses it to
        make room for its parallel sequences.
        """

        def do_resize() -> None:
            model = self._require_model()
            ctx = model.n_ctx if n_ctx is None else n_ctx
            par = self.n_parallel if n_parallel is None else n_parallel
            if not 1 <= par <= 64:
                raise ValueError(f"n_parallel={par}: must be between 1 and 64")
            if (ctx, par) == (model.n_ctx, self.n_parallel):
                return
            model.resize(ctx, par)
            self.n_parallel = par
            self._slot_tokens = [[] for _ in range(par)]
            self._options = dataclasses.replace(self._options, n_ctx=model.n_ctx, n_parallel=par)

        self._call(do_resize)

    def count_prompt_tokens(self, specs: list[GenerationSpec]) -> list[int]:
        """How many tokens each prompt is once rendered through the chat template (``-1``: it cannot be)."""

        def count() -> list[int]:
            model = self._require_model()
            out = []
            for spec in specs:
                try:
                    out.append(len(self._prompt_tokens(model, spec)))
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
        """The bytes of each token id (special tokens by their text, e.g. ``<|im_end|>``)."""
        return self._call(lambda: [self._require_model().token_bytes(int(t)) for t in ids])

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text the chat template makes of ``messages`` (ready for the reply)."""
        return self._call(lambda: self._require_model().render_chat(messages))

    def next_token_logits(self, tokens: list[int]) -> "np.ndarray":
        """The model's scores for the token after ``tokens``: one float32 per vocabulary entry.

        Only this position's logits are copied out. Runs on the worker between generations, in
        sequence 0's KV stream, reusing its cached prefix (stepping a prompt forward one token
        evaluates one token).
        """

        def run() -> "np.ndarray":
            model = self._require_model()
            if not tokens:
                raise ValueError("the prompt is empty: the model needs at least one token to predict the next")
            if len(tokens) >= model.n_ctx_seq:
                raise ContextOverflow(f"The text is {len(tokens)} tokens but the context holds {model.n_ctx_seq}. "
                                      f"Shorten it, or reload with a larger context (`%lm load --ctx N`).")  # fmt: skip
            common = self._reuse_prefix(model, 0, tokens)  # slot 0 now holds tokens[:common]
            chunk: list[int] = []
            for start in range(common, len(tokens), model.n_batch):
                chunk = tokens[start : start + model.n_batch]
                want = [start + i == len(tokens) - 1 for i in range(len(chunk))]
                rc = model.decode(chunk, [0] * len(chunk), list(range(start, start + len(chunk))), want)
                if rc != 0:
                    model.seq_rm(0, 0, -1)
                    self._slot_tokens[0] = []
                    raise GenerationError(f"llama_decode returned {rc}")
                self._slot_tokens[0].extend(chunk)
            return model.logits(len(chunk) - 1)

        return self._call(run)

    def slot_positions(self) -> list[int]:
        """For each sequence slot, the highest KV-cache position it holds (-1 = none)."""
        return self._call(lambda: [self._require_model().seq_pos_max(i) for i in range(self.n_parallel)])

    def submit(self, spec: GenerationSpec, *, stages: Sequence[Stage] = (),
               on_done: Sequence[Callable[[Completion], None]] = ()) -> Request:  # fmt: skip
        """Queue a generation and return its handle at once. Parameters are validated here.

        ``stages`` and ``on_done`` are the request's output chain (see ``Request``); they run
        off this engine's worker. The caller's ``spec`` is not changed.
        """
        if spec.messages is None and spec.prompt is None:
            raise ValueError("a request needs messages or a prompt")
        spec = dataclasses.replace(spec, params=resolve_sampling(spec.params))
        req = Request(spec, stages=stages, on_done=on_done)
        self.last_activity = time.monotonic()
        self._queue.put(("gen", req))
        return req

    def generate(self, spec: GenerationSpec) -> Completion:
        """Submit and wait; Ctrl-C cancels and returns the partial text (then re-raises)."""
        req = self.submit(spec)
        try:
            return req.result()
        except KeyboardInterrupt:
            req.cancel()
            req.result()
            raise

    def cancel(self, request_id: str) -> bool:
        """Cancel a queued or running request by id (from any thread)."""
        with self._lock:
            for s in self._active:
                if s.req.id == request_id:
                    s.req.cancel()
                    return True
        for item in list(self._queue.queue):
            if item[0] == "gen" and item[1].id == request_id:
                item[1].cancel()
                return True
        return False

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

        def run() -> tuple[Any, int]:
            if source == "embedder" or (source == "auto" and self._embedder is not None):
                if self._embedder is None:
                    raise NoModelLoaded("No embedding model is loaded: lmnb.load_embedder(MODEL) first.")
                return self._embedder.embed(texts)
            return self._require_model().embed(texts)

        return self._call(run)

    def load_embedder(self, path: str, options: Optional[LoadOptions] = None) -> ModelInfo:
        """Load a model used only for embeddings, next to the chat model (replacing the previous one)."""
        opts = _resolve_load_options(options or LoadOptions())

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
            _trim_heap()  # give its buffers back to the OS, as an unload does
        return had is not None

    def active(self) -> list[Request]:
        """The requests being generated now (queued ones not included)."""
        with self._lock:
            return [s.req for s in self._active]

    @property
    def queue_depth(self) -> int:
        """Requests being generated plus those waiting their turn."""
        return self._queue.qsize() + len(self._active)

    @property
    def idle(self) -> bool:
        """Nothing running or queued (``last_activity`` says since when)."""
        return self.queue_depth == 0

    @property
    def generating(self) -> bool:
        """Whether a request is producing tokens now (not just reading its prompt)."""
        return any(not s.prefilling for s in list(self._active))

    def status(self) -> Status:
        import psutil

        model = self._model
        return Status(
            loaded=self._info is not None,
            model=self._info,
            options=self._options,
            rss_bytes=psutil.Process().memory_info().rss,
            model_bytes=model.weights_bytes if model is not None else 0,
            last_tokens_per_s=self.last_tokens_per_s,
            queue_depth=self.queue_depth,
            requests_served=self.requests_served,
        )

    def shutdown(self, timeout: float = 30) -> None:
        """Cancel everything, stop the worker and free the model (at interpreter exit, in tests)."""
        if not self._thread.is_alive():
            return
        with self._lock:
            for s in self._active:
                s.req.cancel()
        for item in list(self._queue.queue):
            if item[0] == "gen":
                item[1].cancel()
        self._stopping = True
        self._queue.put(("stop",))
        self._thread.join(timeout=timeout)

    # ------------------------------------------------------------------------------------------
    # Worker
    # ------------------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        if threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put(("call", fn, fut))
        while True:
            try:
                # poll, so that the main thread wakes up for Ctrl-C / a kernel interrupt
                return fut.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                continue

    def _require_model(self):
        if self._model is None:
            raise NoModelLoaded()
        return self._model

    def _drop_model(self) -> bool:
        for s in list(self._active):
            self._finish(s, "cancelled")
        had = self._model is not None
        if self._model is not None:
            self._model.close()
        self._model = None
        self._info = None
        self._options = None
        self._slot_tokens = []
        import gc

        gc.collect()
        _trim_heap()
        return had

    def _run(self) -> None:
        while True:
            try:
                if not self._active and self._held_call is not None:
                    item, self._held_call = self._held_call, None
                elif not self._active:
                    item = self._queue.get()
                else:
                    item = self._next_nonblocking()
                if item is not None:
                    if item[0] == "stop":
                        self._drop_embedder()
                        self._drop_model()
                        return
                    self._dispatch(item)
                if self._active:
                    self._step()
            except BaseException as e:  # the worker must survive anything
                for s in list(self._active):
                    # the KV cache of this sequence is in an unknown state: forget it
                    self._slot_tokens[s.slot].clear()
                    if self._model is not None:
                        self._model.seq_rm(s.slot, 0, -1)
                    self._fail(s, e)

    def _next_nonblocking(self) -> Optional[tuple]:
        # Admit new requests only while slots are free and no load/unload is waiting its turn.
        if (self._held_call is not None or len(self._active) >= self.n_parallel) and not self._stopping:
            return None
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _dispatch(self, item: tuple) -> None:
        kind = item[0]
        if kind == "call":
            if self._active:  # keep arrival order: run it once the active requests are done
                self._held_call = item
                return
            _, fn, fut = item
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)
        elif kind == "gen":
            self._admit(item[1])

    def _admit(self, req: Request) -> None:
        try:
            self._start(req)
        except BaseException as e:  # a request that cannot start fails alone; the worker goes on
            self.stats["requests_error"] += 1
            req.fail(e)

    def _start(self, req: Request) -> None:
        if req.cancelled:  # stopped while waiting its turn: an empty reply, reported like any other
            self.requests_served += 1
            self.stats["requests_cancelled"] += 1
            req.deliver(self._completion_for(req, "", "cancelled", Usage(), Timings(), req.spec.params))
            return
        model = self._require_model()
        spec = req.spec
        tokens = self._prompt_tokens(model, spec)
        params = spec.params

        from .sampler import Sampler

        slot = self._pick_slot()
        common = self._reuse_prefix(model, slot, tokens)
        sampler = Sampler(params, model.n_vocab, model.vocab, grammar=spec.grammar)
        for t in tokens[-64:]:
            sampler.accept_prompt(t)
        max_tokens = params.max_tokens if params.max_tokens and params.max_tokens > 0 else model.n_ctx_seq
        seq = _Seq(
            req=req,
            slot=slot,
            sampler=sampler,
            params=params,
            prompt=tokens,
            pending=tokens[common:],
            n_cached=common,
            t_admit=time.perf_counter(),
            stops=list(params.stop or []),
            max_tokens=max_tokens,
        )
        with self._lock:
            self._active.append(seq)

    def _prompt_tokens(self, model, spec: GenerationSpec) -> list[int]:
        if spec.messages is not None:
            prompt_text = model.render_chat(spec.messages)
            tokens = model.tokenize(prompt_text, add_special=False, parse_special=True)
            if not tokens or tokens[0] != _bos(model):
                # templates normally write BOS themselves; add it if the model wants one and it didn't
                tokens = _maybe_bos(model, tokens)
        elif isinstance(spec.prompt, list):
            tokens = list(spec.prompt)
        else:
            tokens = model.tokenize(spec.prompt or "", add_special=True, parse_special=True)
        if not tokens:
            raise ValueError("the prompt is empty")
        if len(tokens) >= model.n_ctx_seq:
            if model.n_seq_max > 1:
                held = (f"each of the {model.n_seq_max} parallel sequences holds {model.n_ctx_seq} "
                        f"({model.n_ctx} / {model.n_seq_max})")
                want = _next_pow2((len(tokens) + 512) * model.n_seq_max)
            else:
                held, want = f"the context holds {model.n_ctx}", _next_pow2(len(tokens) + 512)
            raise ContextOverflow(
                f"The prompt is {len(tokens)} tokens but {held}. "
                f"Shorten it, or reload with a larger context (e.g. `%lm load --ctx {want}`)."
            )

        return tokens

    def _reuse_prefix(self, model, slot: int, tokens: list[int]) -> int:
        """Keep (or borrow from another sequence) the longest cached prefix of ``tokens``; returns its length.

        A shared system prompt or template prefix is evaluated once: a new sequence takes the
        cells another one already holds (copied, which costs far less than evaluating them), and
        evaluates only the rest.
        """
        cached = self._slot_tokens[slot]
        common = _common_prefix(cached, tokens)
        donor, best = slot, common
        for i, other in enumerate(self._slot_tokens):
            if i != slot:
                n = _common_prefix(other, tokens)
                if n > best:
                    donor, best = i, n
        best = min(best, len(tokens) - 1)  # at least one token must be evaluated to get logits
        if donor != slot and best > common:
            model.copy_prefix(donor, slot, best)
            self._slot_tokens[slot] = list(tokens[:best])
            self.stats["prefix_tokens_shared"] += best
            return best
        common = min(common, len(tokens) - 1)
        if not model.seq_rm(slot, common, -1):
            model.seq_rm(slot, 0, -1)  # e.g. sliding-window caches cannot drop a suffix
            common = 0
        del cached[common:]
        return common

    def _pick_slot(self) -> int:
        busy = {s.slot for s in self._active}
        free = [i for i in range(self.n_parallel) if i not in busy]
        # The lowest free slot: llama.cpp decodes a batch of per-sequence KV streams in one ubatch
        # only while their ids are consecutive (a gap splits it in two, about 25% slower), and
        # _reuse_prefix borrows a cached prefix from any slot anyway.
        return min(free)

    def _step(self) -> None:
        model = self._model
        for s in list(self._active):
            if s.req.cancelled:
                self._finish(s, "cancelled")
        if not self._active:
            return
        tokens: list[int] = []
        seqs: list[int] = []
        pos: list[int] = []
        want: list[bool] = []
        owners: list[tuple[_Seq, int]] = []
        generating: list[_Seq] = []
        budget = model.n_batch
        # Generating sequences first (one token each), so a long prompt never stalls their stream.
        for s in sorted(self._active, key=lambda s: s.slot):
            if not s.prefilling:
                generating.append(s)
                owners.append((s, len(tokens)))
                tokens.append(s.last_token)
                seqs.append(s.slot)
                pos.append(len(self._slot_tokens[s.slot]))
                want.append(True)
                budget -= 1
        prefill: list[tuple[_Seq, int]] = []
        for s in self._active:
            if s.prefilling and budget > 0:
                # The last prompt token is always decoded on its own: its logits then come from the
                # same kernels whether or not the rest of the prompt was cached, so a seed replays
                # exactly (batched matmuls differ from single-token ones in the last bits).
                n = len(s.pending) if len(s.pending) == 1 else min(budget, len(s.pending) - 1)
                chunk = s.pending[:n]
                start = len(self._slot_tokens[s.slot])
                last = len(chunk) == len(s.pending)
                for i, t in enumerate(chunk):
                    tokens.append(t)
                    seqs.append(s.slot)
                    pos.append(start + i)
                    want.append(last and i == len(chunk) - 1)
                if last:
                    owners.append((s, len(tokens) - 1))
                prefill.append((s, len(chunk)))
                budget -= len(chunk)
        if not tokens:
            return

        abort = None
        if any(n >= _ABORTABLE_CHUNK for _, n in prefill):
            watched = [s.req for s, _ in prefill]
            abort = lambda: any(r.cancelled for r in watched)  # noqa: E731
        rc = model.decode(tokens, seqs, pos, want, abort=abort)
        if rc == 2:  # aborted: drop whatever part of the chunks reached the cache
            for s in list(self._active):
                model.seq_rm(s.slot, len(self._slot_tokens[s.slot]), -1)
                if s.req.cancelled:
                    self._finish(s, "cancelled")
            return
        if rc != 0:
            why = "the KV cache is full" if rc == 1 else f"llama_decode returned {rc}"
            for s in list(self._active):
                model.seq_rm(s.slot, len(self._slot_tokens[s.slot]), -1)
                self._fail(s, GenerationError(f"Generation failed: {why}."))
            return

        now = time.perf_counter()
        for s, n in prefill:
            self._slot_tokens[s.slot].extend(s.pending[:n])
            del s.pending[:n]
            if not s.pending:
                s.t_prompt_done = now
                s.req.prompt_done.set()
            if len(s.prompt) - s.n_cached > model.n_batch:  # a prompt read over several steps
                s.req.progress(len(s.prompt) - len(s.pending), len(s.prompt))
        for s in generating:
            self._slot_tokens[s.slot].append(s.last_token)
        self.stats["decode_calls"] += 1
        self.stats["decoded_tokens"] += len(tokens)
        self.stats["sequences_decoded"] += len(generating) + len(prefill)
        for s, idx in owners:
            tok = s.sampler.sample(model.ctx, idx)
            if s.req.spec.logprobs is not None and not model.is_eog(tok):
                s.req.logprobs.append(model.logprob_entry(idx, tok, s.req.spec.logprobs))
            self._on_token(s, tok)

    def _on_token(self, s: _Seq, tok: int) -> None:
        model = self._model
        if not s.generated:
            s.t_first = time.perf_counter()
        if model.is_eog(tok):
            self._finish(s, "stop")
            return
        s.generated.append(tok)
        self.tokens_generated += 1
        s.last_token = tok
        s.held += s.decoder.decode(model.piece(tok))
        if s.stops:
            if self._check_stops(s):
                return
        elif s.held:
            s.text += s.held
            s.req.emit(s.held)
            s.held = ""
        if len(s.generated) >= s.max_tokens or len(self._slot_tokens[s.slot]) + 1 >= model.n_ctx_seq:
            self._finish(s, "length")

    def _check_stops(self, s: _Seq) -> bool:
        """Emit what can no longer become a stop string; finish at a stop string."""
        held = s.held
        hit = min(((held.find(x), x) for x in s.stops if x in held), default=None)
        if hit is not None:
            s.held = held[: hit[0]]
            self._finish(s, "stop", at_stop_string=True)
            return True
        keep = 0
        for x in s.stops:
            for k in range(min(len(x) - 1, len(held)), keep, -1):
                if held.endswith(x[:k]):
                    keep = k
                    break
        if len(held) > keep:
            out = held[: len(held) - keep]
            s.held = held[len(held) - keep :]
            s.text += out
            s.req.emit(out)
        return False

    def _finish(self, s: _Seq, reason: str, at_stop_string: bool = False) -> None:
        if not at_stop_string:  # text after a stop string is dropped, anything else is kept
            s.held += s.decoder.decode(b"", final=True)
        if s.held:
            s.text += s.held
            s.req.emit(s.held)
            s.held = ""
        now = time.perf_counter()
        n_prompt_eval = len(s.prompt) - s.n_cached
        t_prompt_done = s.t_prompt_done or now
        prompt_s = max(t_prompt_done - s.t_admit, 1e-9)
        gen_s = max(now - t_prompt_done, 1e-9)
        n_gen = len(s.generated)
        timings = Timings(
            queued_s=s.t_admit - s.req.submitted,
            ttft_s=(s.t_first - s.req.submitted) if s.t_first else 0.0,
            prompt_s=prompt_s,
            generation_s=gen_s,
            prompt_tokens_per_s=n_prompt_eval / prompt_s if n_prompt_eval else 0.0,
            generation_tokens_per_s=n_gen / gen_s if n_gen else 0.0,
        )
        usage = Usage(prompt_tokens=len(s.prompt), completion_tokens=n_gen, cached_tokens=s.n_cached)
        result = self._completion_for(s.req, s.text, reason, usage, timings, s.params)
        self._retire(s)
        if reason == "cancelled" and self._model is not None:
            # a stopped sequence's cells go back to the others at once (a cancelled batch frees all)
            self._model.seq_rm(s.slot, 0, -1)
            self._slot_tokens[s.slot].clear()
        if n_gen:
            self.last_tokens_per_s = timings.generation_tokens_per_s
        self.requests_served += 1
        self.stats["prompt_tokens"] += len(s.prompt)
        self.stats["prompt_tokens_evaluated"] += n_prompt_eval
        self.stats["generated_tokens"] += n_gen
        self.stats["requests_" + reason] = self.stats.get("requests_" + reason, 0) + 1
        s.req.deliver(result)

    def _fail(self, s: _Seq, error: BaseException) -> None:
        self._retire(s)
        self.stats["requests_error"] += 1
        s.req.fail(error)

    def _retire(self, s: _Seq) -> None:
        with self._lock:
            if s in self._active:
                self._active.remove(s)
        s.sampler.close()
        self.last_activity = time.monotonic()

    def _completion_for(self, req, text, reason, usage, timings, params) -> Completion:
        return Completion(
            text=text,
            finish_reason=reason,
            usage=usage,
            timings=timings,
            model=self._info.name if self._info else "",
            params=params,
            request_id=req.id,
            logprobs=list(req.logprobs) if req.spec.logprobs is not None else None,
        )


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def resolve_sampling(params: Optional[SamplingParams]) -> SamplingParams:
    """Fill unset fields from the session defaults, validate, and pick a seed if none is fixed."""
    from ..config import get_config
    from ..types import SAMPLING_FIELDS

    cfg = get_config()
    defaults = SamplingParams(**{name: getattr(cfg, name) for name in SAMPLING_FIELDS})
    defaults.stop = list(cfg.stop) or None
    defaults.logit_bias = dict(cfg.logit_bias) or None
    p = (params or SamplingParams()).merged(defaults).validate()
    if p.seed is None or p.seed == -1:
        p.seed = random.getrandbits(32)  # recorded in the result, so any reply can be reproduced
    return p


def _resolve_load_options(opts: LoadOptions) -> LoadOptions:
    from ..config import get_config

    cfg = get_config()
    out = LoadOptions(
        n_ctx=cfg.n_ctx if opts.n_ctx is None else opts.n_ctx,
        n_gpu_layers=cfg.n_gpu_layers if opts.n_gpu_layers is None else opts.n_gpu_layers,
        n_threads=cfg.n_threads if opts.n_threads is None else opts.n_threads,
        n_batch=cfg.n_batch if opts.n_batch is None else opts.n_batch,
        n_parallel=cfg.n_parallel if opts.n_parallel is None else opts.n_parallel,
        flash_attn=cfg.flash_attn if opts.flash_attn is None else opts.flash_attn,
        use_mmap=cfg.use_mmap if opts.use_mmap is None else opts.use_mmap,
        seed=cfg.load_seed if opts.seed is None else opts.seed,
        chat_template=(cfg.chat_template or None) if opts.chat_template is None else opts.chat_template,
    )
    if out.n_ctx is not None and out.n_ctx < 0:
        raise ValueError(f"n_ctx={out.n_ctx}: must be >= 0 (0 = the model's trained context)")
    if not 1 <= out.n_parallel <= 64:
        raise ValueError(f"n_parallel={out.n_parallel}: must be between 1 and 64")
    if out.n_batch is not None and out.n_batch < 1:
        raise ValueError(f"n_batch={out.n_batch}: must be >= 1")
    if out.n_threads is not None and out.n_threads < 0:
        raise ValueError(f"n_threads={out.n_threads}: must be >= 0 (0 = physical cores)")
    g = out.n_gpu_layers
    if isinstance(g, str) and g not in ("auto", "max"):
        try:
            out.n_gpu_layers = int(g)
        except ValueError:
            raise ValueError(f"n_gpu_layers={g!r}: expected an integer, 'auto' or 'max'") from None
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _bos(model) -> int:
    import llama_cpp as C

    return int(C.llama_vocab_bos(model.vocab))


def _maybe_bos(model, tokens: list[int]) -> list[int]:
    import llama_cpp as C

    if C.llama_vocab_get_add_bos(model.vocab) and _bos(model) >= 0:
        return [_bos(model)] + tokens
    return tokens


def _next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS so that unloading shows up in RSS (glibc only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass
