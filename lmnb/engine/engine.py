"""The engine: one worker thread owns the llama.cpp model and context; everyone else submits.

Cells, widgets and HTTP handlers call ``Engine.submit`` from any thread and get a ``Request``
handle back. The worker takes work strictly in arrival order from one FIFO queue. Generation
is a loop of *steps*: each step packs the pending work of every active sequence (a prompt chunk
or one new token) into one ``llama_decode`` call, then samples a token for each sequence that
produced logits. With ``n_parallel == 1`` that is the classic one-request-at-a-time loop; with
more slots the same loop is continuous batching, and no caller changes. The loop itself (admit,
step, finish) is in ``batching.py``.

Loads and unloads are queued like generations, so they never race a running decode: a load
waits for the active requests to finish, and requests that arrive after it wait for the load.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue
import threading
import time
from typing import Any, Callable, Optional, Sequence

from ..errors import LoadError, NoModelLoaded
from ..types import (
    Completion,
    LoadOptions,
    ModelInfo,
    Status,
)
from .adapters import Adapter, Adapters, LoraChoice, check_scale
from .batching import Batching, slots_for
from .inspection import Inspection
from .request import GenerationSpec, Request, Stage
from .sequence import Seq
from .settings import resolve_load_options, resolve_sampling
from .stash import Stash


class Engine(Batching, Inspection):
    """Owns the model; serves requests from any thread. Use ``lmnb.get_engine()`` for the shared one."""

    def __init__(self, n_parallel: int = 1, name: str = "default") -> None:
        self.name = name  # the registry's name for this model ("default" for the default model)
        self.n_parallel = n_parallel
        self._queue: "queue.Queue[tuple]" = queue.Queue()
        self._model = None  # LoadedModel, touched only by the worker
        self._info: Optional[ModelInfo] = None
        self._options: Optional[LoadOptions] = None
        self._active: list[Seq] = []
        self._paused: list[Seq] = []  # moved out of a full shared cache, to resume when there is room
        self._slot_tokens: list[list[int]] = []  # what each sequence id holds in the KV cache
        self._slot_used: list[float] = []  # when each sequence id was last given to a request
        self._slot_lora: list[tuple] = []  # the adapter set that wrote each sequence id's cells
        self._stash = Stash()  # idle slots' cells, moved out of a shared cache while others decode
        self._adapters = Adapters()  # LoRA adapters on the model, touched only by the worker
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
             "prefix_tokens_shared", "cache_evictions", "cache_stashed", "cache_restored", "sequences_paused",
             "lora_switches"), 0)
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
        opts = resolve_load_options(options or LoadOptions())
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
            unified = not opts.batch_invariant
            model = LoadedModel(path, opts, n_seq_max=slots_for(self.n_parallel, unified), progress=on_progress,
                                unified=unified)  # fmt: skip
            self._model = model
            self._new_slots(model.n_seq_max)
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

    def clear_cache(self) -> None:
        """Forget every cached prompt: the KV cache and the idle sequences kept in RAM.

        The next request reads its whole prompt into an empty cache, laid out as after a fresh
        load: for replies that must not depend on what ran before (a shared cache places a
        sequence's cells around the others', which can change a greedy reply). Waits for the
        running requests.
        """

        def run() -> None:
            if self._model is not None:
                for slot in range(len(self._slot_tokens)):
                    self._forget_slot(slot)

        self._call(run)

    # --- LoRA adapters ------------------------------------------------------------------------
    def add_lora(self, path: str, scale: float = 1.0, name: Optional[str] = None, source: str = "") -> Adapter:
        """Load a GGUF LoRA adapter onto the model, applied at ``scale`` to requests that do not
        choose their adapters. Waits for running requests; the base stays loaded if it fails."""
        scale = check_scale(scale)
        return self._adapters_changed(self._call(lambda: self._adapters.add(self._require_model(), path, name,
                                                                            scale, source)))  # fmt: skip

    def scale_lora(self, name: str, scale: float) -> Adapter:
        """Change an adapter's session scale (0: loaded but off)."""
        scale = check_scale(scale)

        def run() -> Adapter:
            adapter = self._adapters.get(name)
            adapter.scale = scale
            return adapter

        return self._adapters_changed(self._call(run))

    def remove_lora(self, name: str) -> Adapter:
        """Free an adapter: later requests get the base (or the other adapters) again."""

        def run() -> Adapter:
            model = self._require_model()
            adapter = self._adapters.remove(model.ctx, name)
            self._forget_slots(lambda key: any(n == adapter.name for n, _ in key))
            return adapter

        return self._adapters_changed(self._call(run))

    def _adapters_changed(self, adapter: Adapter) -> Adapter:
        self._model_changed(self._info)  # the panes that list the model list its adapters again
        return adapter

    def loras(self) -> list[Adapter]:
        """The loaded adapters, in the order they were added (llama-server's ids are positions here)."""
        return list(self._adapters.loaded.values())

    def lora_key(self, choice: LoraChoice = None) -> tuple:
        """The adapter set a request with ``lora=choice`` gets; ``ValueError`` for an unknown name."""
        return self._adapters.resolve(choice)

    def _forget_slots(self, which: Callable[[tuple], bool]) -> None:
        for i, key in enumerate(self._slot_lora):
            if which(key) and self._slot_tokens[i]:
                self._forget_slot(i)
                self._slot_lora[i] = ()

    def _model_changed(self, info: Optional[ModelInfo]) -> None:
        for listener in list(self.model_listeners):
            try:
                listener(info)
            except Exception:  # a broken widget must not break loading
                pass

    def resize(self, n_ctx: Optional[int] = None, n_parallel: Optional[int] = None) -> None:
        """Give the loaded model's context ``n_ctx`` cells for ``n_parallel`` sequences (shared, or
        ``n_ctx / n_parallel`` each with ``batch_invariant``).

        Only the context is recreated (about 0.1 s; the weights stay loaded, the KV cache starts
        empty), and not even that when a shared cache keeps its size and has the sequence ids. Queued like a load: it waits for the running requests. ``lmnb.map`` uses it to
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
            if not (model.unified and ctx == model.n_ctx and par <= model.n_seq_max):
                # a shared cache with enough sequence ids only changes how many run at once
                model.resize(ctx, slots_for(par, model.unified))
                self._new_slots(model.n_seq_max)
            self.n_parallel = par
            self._options = dataclasses.replace(self._options, n_ctx=model.n_ctx, n_parallel=par)

        self._call(do_resize)

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
            self._model.close()  # llama.cpp frees the model's adapters with it
        self._adapters.forget()
        self._model = None
        self._info = None
        self._options = None
        self._new_slots(0)
        import gc

        from ._llama import trim_heap  # llama_cpp is imported by then: a model was loaded

        gc.collect()
        trim_heap()
        return had

    def _new_slots(self, n: int) -> None:
        self._slot_tokens = [[] for _ in range(n)]
        self._slot_used = [0.0] * n
        self._slot_lora = [()] * n
        self._stash.clear()

    def _run(self) -> None:
        while True:
            try:
                busy = self._active or self._paused
                if not busy and self._held_call is not None:
                    item, self._held_call = self._held_call, None
                elif not busy:
                    item = self._queue.get()
                else:
                    item = self._next_nonblocking()
                if item is not None:
                    if item[0] == "stop":
                        self._drop_embedder()
                        self._drop_model()
                        return
                    self._dispatch(item)
                if self._active or self._paused:
                    self._step()
            except BaseException as e:  # the worker must survive anything
                self._active.extend(self._paused)
                self._paused.clear()
                for s in list(self._active):
                    # the KV cache of this sequence is in an unknown state: forget it
                    self._slot_tokens[s.slot].clear()
                    if self._model is not None:
                        self._model.seq_rm(s.slot, 0, -1)
                    self._fail(s, e)

    def _next_nonblocking(self) -> Optional[tuple]:
        # Admit new requests only while slots are free, no sequence waits to resume (it came first)
        # and no load/unload is waiting its turn.
        if (self._held_call is not None or self._paused or len(self._active) >= self.n_parallel) and not self._stopping:
            return None
        if not self._queue.queue:  # nothing waiting, seen without the lock and the exception (a racing
            return None  # put is seen at the next step, ~a token later)
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
