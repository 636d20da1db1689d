"""Which loaded model serves a request: the one it names, one loaded on demand, or the default.

With the session's registry (``lmnb serve``, ``%lm serve``) a request's ``model`` picks among the
loaded models by name, model name, file or path. A local model that is not loaded is loaded on
demand when ``LM.jit_load`` is on, after a memory check (the fit estimate): one that will not fit
is refused, never swapped in to thrash. A name that matches nothing goes to the default model
(clients hard-code ``gpt-4o-mini``; the reply's ``model`` says which answered), or gets 404 with
``LM.strict_model_names``. An app made for one engine (tests, embedding) serves only that engine.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Optional

from fastapi import Request

from ..config import get_config
from ..engine import Engine
from ..errors import LmnbError, LoadError
from ..types import LoadOptions, ModelInfo
from .errors import APIError, no_model

_jit_lock = threading.Lock()  # one load on demand at a time: two clients asking for it load it once


async def choose(request: Request, name: Optional[str]) -> tuple[Engine, ModelInfo, Optional[str]]:
    """The engine for ``name``, its model, and its registry name (``None`` for a single-engine app)."""
    reg = request.app.state.registry
    if reg is None:
        engine = request.app.state.engine
        return engine, served_model(engine, name), None
    key = reg.find(name)
    if key is None and name:
        key = await asyncio.to_thread(_load_on_demand, reg, name)
    if key is None:
        if name and get_config().strict_model_names:
            loaded = ", ".join(repr(_listed_name(reg, n)) for n in reg.names()) or "none"
            raise APIError(404, f"The model {name!r} is not loaded (loaded: {loaded}; see GET /v1/models).",
                           param="model", code="model_not_found")  # fmt: skip
        key = reg.find(None)
        if key is None:
            raise no_model()
    try:
        engine = reg.get(key)
    except LmnbError:  # unloaded in between
        raise no_model() from None
    info = engine.info
    if info is None:
        raise no_model()
    return engine, info, key


def _load_on_demand(reg, name: str) -> Optional[str]:
    """Load the local model ``name`` (registry name: ``name``) if allowed and it fits; else ``None``."""
    if not get_config().jit_load:
        return None
    from ..sources.library import resolve

    try:
        path = resolve(name, download=False)
    except LmnbError:
        return None  # not a model on this machine: the default answers (or 404 when strict)
    with _jit_lock:
        key = reg.find(name) or reg.find(path)
        if key is not None:
            return key  # loaded meanwhile, or already loaded under another name
        try:
            reg.check_fits(path, LoadOptions())
            reg.load(path, LoadOptions(), name=name, on_demand=True)
        except LoadError as e:
            raise APIError(503, f"Could not load {name!r} on demand: {e}", param="model",
                           code="model_not_loaded") from None  # fmt: skip
    return name


def _listed_name(reg, key: str) -> str:
    """What /v1/models calls the model registered as ``key``: the default by its model's name."""
    info = reg.get(key).info
    return info.name if key == "default" and info is not None else key


def listed(reg) -> list[tuple[str, ModelInfo]]:
    """``(id, info)`` of every loaded model, the default first, as /v1/models lists them."""
    out = []
    for key in reg.names():
        info = reg.get(key).info
        if info is not None:
            out.append((_listed_name(reg, key), info))
    return out


def loaded_model(engine: Engine) -> ModelInfo:
    """The loaded model (503 when none is)."""
    info = engine.info
    if info is None:
        raise no_model()
    return info


def names_model(info: ModelInfo, name: str) -> bool:
    """Whether a client's model ``name`` means the model ``info`` (its name, file name, path or a reference)."""
    if name in (info.name, os.path.basename(info.path), info.path):
        return True
    try:
        from ..sources.library import resolve

        return os.path.abspath(resolve(name)) == info.path
    except Exception:
        return False


def served_model(engine: Engine, name: Optional[str]) -> ModelInfo:
    """The loaded model, when ``name`` is empty or names it; else 404 (or 503 with no model)."""
    info = loaded_model(engine)
    if not name or names_model(info, name):
        return info
    raise APIError(
        404,
        f"The model {name!r} is not loaded; this server serves {info.name!r} (see GET /v1/models). "
        f"Load another model in the notebook with `%lm load`.",
        param="model",
        code="model_not_found",
    )
