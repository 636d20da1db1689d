"""The models loaded in this kernel, by name. Each has its own ``Engine``: its own worker thread,
llama.cpp context and queue, so nothing serializes model A's requests behind model B's.

``load(path)`` without a name replaces the *default* model (a beginner's ``%lm load X`` means
"use X now"); under a new name it loads beside the others. A request names its model by that
name, by the model's own name (``ModelInfo.name``), by its file name or its path; with no name
it goes to the default model, else to the only (first) model loaded.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .errors import LoadError, NoModelLoaded
from .types import LoadOptions, ModelInfo

DEFAULT = "default"


@dataclass
class Loaded:
    """One loaded model as ``lmnb.status()`` lists it."""

    name: str  # what requests call it (``--as NAME``; "default" for the default model)
    model: ModelInfo
    options: Optional[LoadOptions]
    model_bytes: int  # weights + context, as llama.cpp reports them
    on_demand: bool  # loaded by a request naming it (unloaded after ``LM.idle_unload`` idle)
    requests_served: int
    idle_s: float
    lora: dict = field(default_factory=dict)  # its LoRA adapters and their scales, {name: scale}

    def __repr__(self) -> str:
        from .tables import human_bytes

        how = ", on demand" if self.on_demand else ""
        how += "".join(f", LoRA {n}×{s:g}" for n, s in self.lora.items())
        return f"Loaded({self.name!r}: {self.model.name}, {human_bytes(self.model_bytes)}{how})"


class Registry:
    """Named engines. Thread-safe; one per kernel (``lmnb.api.registry()``)."""

    def __init__(self, make_engine: Callable[[str], "Engine"]) -> None:  # noqa: F821
        self._make_engine = make_engine
        self._engines: dict[str, "Engine"] = {}  # noqa: F821
        self._on_demand: set[str] = set()
        self._lock = threading.RLock()
        self._janitor: Optional[threading.Thread] = None
        self._wake = threading.Event()
        # called with (name, ModelInfo or None) after a load or unload of any model
        self.listeners: list[Callable[[str, Optional[ModelInfo]], None]] = []

    # --- lookup -------------------------------------------------------------------------------
    def engine(self, name: str = DEFAULT) -> "Engine":  # noqa: F821
        """The engine registered under ``name``, created (empty) when missing."""
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self._engines[name] = self._make_engine(name)
                engine.model_listeners.append(lambda info, n=name: self._changed(n, info))
            return engine

    def names(self) -> list[str]:
        """Names of the loaded models, the default first."""
        with self._lock:
            names = [n for n, e in self._engines.items() if e.loaded]
        return sorted(names, key=lambda n: n != DEFAULT)

    def find(self, model: Optional[str]) -> Optional[str]:
        """The registry name of the loaded model that ``model`` designates, or ``None``.

        ``None`` designates the default model (else the first loaded). A string matches a
        registry name, then a model's own name, file name (with or without ``.gguf``) or path.
        """
        names = self.names()
        if model is None or model == "":
            return names[0] if names else None
        if model in names:
            return model
        wanted = model.lower()
        for n in names:
            info = self._engines[n].info
            if info is None:
                continue
            base = os.path.basename(info.path).lower()
            if wanted in (info.name.lower(), base, os.path.splitext(base)[0]) or model == info.path:
                return n
        return None

    def get(self, model: Optional[str] = None) -> "Engine":  # noqa: F821
        """The engine serving ``model`` (see ``find``). Raises ``NoModelLoaded`` when none does."""
        name = self.find(model)
        if name is None:
            if model:
                raise NoModelLoaded(
                    f"No loaded model is called {model!r}. Loaded: {', '.join(self.names()) or 'none'}; "
                    f"load it with `%lm load {model} --as NAME` (or `lmnb.load(..., name=...)`)."
                )
            raise NoModelLoaded()
        return self._engines[name]

    # --- load / unload ------------------------------------------------------------------------
    def load(self, path: str, options: LoadOptions, *, name: Optional[str] = None,
             progress: Optional[Callable[[float], None]] = None, on_demand: bool = False) -> ModelInfo:  # fmt: skip
        """Load ``path`` under ``name`` (``None``: the default model, replacing it)."""
        key = name or DEFAULT
        engine = self.engine(key)
        info = engine.load(path, options, progress=progress)
        with self._lock:
            if on_demand:
                self._on_demand.add(key)
            else:
                self._on_demand.discard(key)
        self._start_janitor()
        return info

    def unload(self, model: Optional[str] = None) -> bool:
        """Unload the model ``model`` designates (``None``: the default). Returns whether one was."""
        key = DEFAULT if model is None else self.find(model)
        if key is None:
            return False
        with self._lock:
            engine = self._engines.get(key)
            self._on_demand.discard(key)
            if engine is None:
                return False
            if key != DEFAULT:
                del self._engines[key]  # new requests for it no longer find it
        had = engine.unload()
        if key != DEFAULT:
            engine.shutdown(30)  # its worker thread ends with its model
        return had

    def unload_all(self) -> int:
        """Unload every model; returns how many were loaded."""
        return sum(self.unload(n) for n in self.names())

    def loaded(self) -> list[Loaded]:
        """Every loaded model with its memory, the default first."""
        out = []
        now = time.monotonic()
        for n in self.names():
            e = self._engines.get(n)
            st = e.status() if e is not None else None
            if st is None or not st.loaded:
                continue
            out.append(Loaded(n, st.model, st.options, st.model_bytes, n in self._on_demand,
                              st.requests_served, now - e.last_activity,
                              {a.name: a.scale for a in e.loras()}))  # fmt: skip
        return out

    def shutdown(self, timeout: float = 10) -> None:
        with self._lock:
            engines = list(self._engines.values())
        for e in engines:
            e.shutdown(timeout)

    # --- loading on demand and unloading when idle -----------------------------------------------
    def check_fits(self, path: str, options: LoadOptions) -> None:
        """Raise ``LoadError`` when ``path`` will not fit in free RAM/VRAM (the fit estimate)."""
        from .engine.model import read_info
        from .sources import fit

        info = read_info(path)
        verdict = fit.estimate(info.file_size, info.metadata, n_ctx=options.n_ctx)
        if verdict.verdict == "too-large":
            raise LoadError(
                f"{info.name} will not fit in the memory free now ({verdict.describe()}). "
                "Unload a model first (`%lm unload NAME`), or ask for a smaller quantization."
            )

    def _start_janitor(self) -> None:
        with self._lock:
            if self._janitor is None:
                self._janitor = threading.Thread(target=self._sweep, name="lmnb-idle-unload", daemon=True)
                self._janitor.start()
        self._wake.set()

    def _sweep(self) -> None:
        from .config import get_config

        while True:
            ttl = float(get_config().idle_unload or 0)
            with self._lock:
                candidates = [n for n in self._on_demand if n in self._engines]
            if ttl > 0:
                now = time.monotonic()
                for n in candidates:
                    e = self._engines.get(n)
                    if e is not None and e.idle and now - e.last_activity >= ttl:
                        self.unload(n)
            # wake often enough to honour a short TTL, rarely when there is nothing to watch
            self._wake.wait(min(max(ttl / 4, 0.05), 5.0) if (ttl > 0 and candidates) else 5.0)
            self._wake.clear()

    def _changed(self, name: str, info: Optional[ModelInfo]) -> None:
        for fn in list(self.listeners):
            try:
                fn(name, info)
            except Exception:  # a closed widget must not break loading
                pass
