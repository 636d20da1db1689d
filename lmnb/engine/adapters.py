"""LoRA adapters on a loaded model: loaded once, switched per decode step without reloading.

llama.cpp keeps one adapter set (adapters and scales) per context and applies it to every token
of a ``llama_decode`` call, so the engine decodes together only the sequences that want the same
set (llama-server's rule), and a KV cell is reusable only by a request with the set that wrote it.
A set is a ``Key``: the ``(name, scale)`` pairs with a nonzero scale, sorted; ``()`` is the base.

All methods run on the engine's worker thread (through ``Engine._call``), never during a decode.
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from ..errors import LoadError

Key = tuple[tuple[str, float], ...]
# what a request may ask for: None (the session's adapters at their scales), a name, a list of
# names or (name, scale) pairs, or a {name: scale} mapping; [] / "none" / "base": the base alone
LoraChoice = Union[None, str, Mapping[str, float], list, tuple]
BASE: Key = ()


@dataclass
class Adapter:
    """One loaded adapter, as ``lmnb.lora()`` lists it."""

    name: str
    path: str  # the GGUF file llama.cpp loaded (a PEFT folder's converted copy)
    scale: float  # used by requests that do not choose their adapters
    source: str = ""  # what the user gave: the GGUF file or the PEFT folder
    alpha: Optional[float] = None
    handle: Any = None  # llama_adapter_lora_p

    def as_dict(self) -> dict:
        return {"name": self.name, "path": self.source or self.path, "scale": self.scale, "alpha": self.alpha}


def check_scale(scale: Any) -> float:
    """``scale`` as a float, or ``ValueError`` naming what was given."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise ValueError(f"LoRA scale {scale!r}: expected a number (1.0 applies the adapter as trained, "
                             "0 turns it off)") from None  # fmt: skip
    scale = float(scale)
    if scale != scale or scale in (float("inf"), float("-inf")):
        raise ValueError(f"LoRA scale {scale!r}: expected a finite number")
    return scale


def parse_choice(choice: LoraChoice) -> Optional[dict[str, Optional[float]]]:
    """A request's ``lora`` as ``{name: scale or None (its session scale)}``; ``None``: the session's set.

    Accepts ``"name"``, ``"name:0.5"``, ``"a:0.5 b"``, ``["a", ("b", 0.5)]``, ``{"a": 1.0}``, llama-server's
    ``[{"id": 0, "scale": 0.5}]`` (ids are positions in ``lmnb.lora()``'s list, given as ints),
    and ``[]`` / ``"none"`` / ``"base"`` for the base model alone.
    """
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice.strip().lower() in ("", "none", "base"):
            return {}
        choice = choice.replace(",", " ").split()  # "a:0.5 b" or "a:0.5,b": several at once
    if isinstance(choice, Mapping):
        return {str(k): check_scale(v) for k, v in choice.items()}
    out: dict[str, Optional[float]] = {}
    for item in choice:
        if isinstance(item, str):
            name, sep, scale = item.rpartition(":")
            if sep and _is_number(scale):
                out[name] = check_scale(scale)
            else:
                out[item] = None
        elif isinstance(item, Mapping):
            if "id" not in item:
                raise ValueError(f"LoRA entry {item!r}: expected {{'id': N, 'scale': S}}")
            out[f"#{int(item['id'])}"] = check_scale(item.get("scale", 1.0))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            out[str(item[0])] = check_scale(item[1])
        else:
            raise ValueError(f"LoRA choice {item!r}: expected a name, 'name:scale' or (name, scale)")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class Adapters:
    """The adapters loaded on one model, and the set applied to its context."""

    def __init__(self) -> None:
        self.loaded: dict[str, Adapter] = {}  # in the order they were added
        self._applied: tuple[Any, Key] = (None, BASE)  # (context, key) llama.cpp has now

    # --- what requests ask for ----------------------------------------------------------------
    def default_key(self) -> Key:
        return tuple(sorted((a.name, a.scale) for a in self.loaded.values() if a.scale != 0.0))

    def resolve(self, choice: LoraChoice) -> Key:
        """The key for a request's ``lora`` choice; ``ValueError`` for a name that is not loaded."""
        wanted = parse_choice(choice)
        if wanted is None:
            return self.default_key()
        names = list(self.loaded)
        out: dict[str, float] = {}
        for name, scale in wanted.items():
            if name.startswith("#") and name[1:].isdigit():  # llama-server's id: a position in the list
                i = int(name[1:])
                if not 0 <= i < len(names):
                    raise ValueError(f"LoRA id {i}: {len(names)} adapter(s) loaded (ids 0-{len(names) - 1})"
                                     if names else f"LoRA id {i}: no adapter is loaded")  # fmt: skip
                name = names[i]
            adapter = self.loaded.get(name) or self._by_path(name)
            if adapter is None:
                have = ", ".join(names) or "none"
                raise ValueError(f"no LoRA adapter named {name!r} is loaded (loaded: {have}); "
                                 "add it first with lmnb.lora(PATH) or `%lm lora add PATH`")  # fmt: skip
            out[adapter.name] = adapter.scale if scale is None else scale
        return tuple(sorted((n, s) for n, s in out.items() if s != 0.0))

    def _by_path(self, path: str) -> Optional[Adapter]:
        full = os.path.abspath(os.path.expanduser(path))
        return next((a for a in self.loaded.values() if full in (a.path, a.source)), None)

    # --- the worker's side --------------------------------------------------------------------
    def apply(self, ctx: Any, key: Key) -> None:
        """Give llama.cpp the adapter set ``key`` for the next decode (nothing when it has it)."""
        if self._applied == (ctx, key):
            return
        import llama_cpp as C

        n = len(key)
        handles = (C.llama_adapter_lora_p_ctypes * max(n, 1))(*[self.loaded[name].handle for name, _ in key])
        scales = (ctypes.c_float * max(n, 1))(*[s for _, s in key])
        C.llama_set_adapters_lora(ctx, handles if n else None, n, scales if n else None)
        self._applied = (ctx, key)

    def add(self, model: Any, path: str, name: Optional[str], scale: float, source: str = "") -> Adapter:
        """Load the GGUF LoRA at ``path`` onto ``model`` (a ``LoadedModel``)."""
        import llama_cpp as C

        from . import logs

        name = name or _default_name(source or path)
        if name in self.loaded:
            raise ValueError(f"a LoRA adapter named {name!r} is already loaded; remove it first or pick another name")
        t0 = time.time()
        handle = C.llama_adapter_lora_init(model.model, os.fsencode(path))
        if not handle:
            reasons = "; ".join(logs.LOGS.errors_since(t0)[-3:])
            raise LoadError(f"llama.cpp could not load the LoRA adapter {source or path}: "
                            f"{reasons or 'not a LoRA GGUF for this model?'}")  # fmt: skip
        source = source or path
        source = os.path.abspath(source) if os.path.exists(source) else source  # a repo id stays one
        adapter = Adapter(name=name, path=os.path.abspath(path), scale=scale, source=source,
                          alpha=_meta_float(handle, "adapter.lora.alpha"), handle=handle)  # fmt: skip
        self.loaded[name] = adapter
        return adapter

    def remove(self, ctx: Any, name: str) -> Adapter:
        """Free an adapter; the context ``ctx`` first lets go of it (it keeps pointers to its set)."""
        import llama_cpp as C

        adapter = self.get(name)
        del self.loaded[adapter.name]
        if ctx is not None:
            self.apply(ctx, BASE)
        C.llama_adapter_lora_free(adapter.handle)
        adapter.handle = None
        return adapter

    def get(self, name: str) -> Adapter:
        adapter = self.loaded.get(name) or self._by_path(name)
        if adapter is None:
            have = ", ".join(self.loaded) or "none"
            raise ValueError(f"no LoRA adapter named {name!r} is loaded (loaded: {have})")
        return adapter

    def forget(self) -> None:
        """The model is gone: llama.cpp freed its adapters with it."""
        self.loaded.clear()
        self._applied = (None, BASE)


def _default_name(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    return os.path.splitext(base)[0] if base.lower().endswith(".gguf") else base


def _meta_float(handle: Any, key: str) -> Optional[float]:
    import llama_cpp as C

    buf = ctypes.create_string_buffer(64)
    if C.llama_adapter_meta_val_str(handle, key.encode(), buf, len(buf)) < 0:
        return None
    try:
        return float(buf.value.decode())
    except ValueError:
        return None
