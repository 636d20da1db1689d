"""The JupyterLab extension's line to this kernel: the comm target ``lmnb``.

``%load_ext lmnb`` registers it. The extension (``labextension/``) opens a comm on the current
notebook's kernel and gets, from then on, a ``status`` message whenever what it shows changes
(model, state, server URL, last tokens/s, memory, parameters; checked once a second on the
shared ticker thread) and a ``models`` message on request. It sends the verbs of its status item,
side panel and commands:

    {"type": "hello"}                       -> status + models
    {"type": "models"}                      -> models
    {"type": "load", "model": NAME}         loads on a thread (status shows "loading" and progress)
    {"type": "unload"}                      unloads the default model
    {"type": "unload_model", "name": NAME}  unloads the model loaded under NAME (``lmnb.unload(NAME)``)
    {"type": "serve", "port": N?}           {"type": "stop_server"}

A status describes the default model in its top-level fields (what an older extension reads) and
every loaded model, the default first, in ``models``: ``[{"name": NAME (the name it is loaded
under; "default" for the default model), "model": ModelInfo.name, "model_bytes", "on_demand",
"state": "idle" | "generating" | "loading"}]``. A ``models`` *message* is something else: the local
model files (``lmnb.models()``), each marked ``loaded`` when one of the loaded models is that file.

Failures come back as ``{"type": "error", "message": ...}``; nothing is raised into the kernel.
No extra server process: the messages travel on the kernel's own channels.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional

TARGET = "lmnb"


def shown_parameters(cfg: Any) -> dict[str, float]:
    """The numeric parameters the side panel lists: the brief ones, and any other set away from
    its declared default (a sampler turned on shows up)."""
    from ..params import LOAD, SAMPLING

    out = {}
    for p in SAMPLING + LOAD:
        if p.type not in (int, float):
            continue
        value = getattr(cfg, p.name)
        if p.brief or value != p.default:
            out[p.name] = value
    return out

_links: list["Link"] = []
_registered = False


def register(ipython: Any) -> bool:
    """Register the comm target in this kernel (a no-op outside ipykernel); returns whether it did."""
    global _registered
    if _registered:
        return True
    if getattr(ipython, "kernel", None) is None:
        return False  # plain IPython / a script: no front end to talk to
    try:
        from comm import get_comm_manager

        get_comm_manager().register_target(TARGET, _open)
    except Exception:
        return False
    _registered = True
    return True


def _open(comm: Any, msg: dict) -> None:
    link = Link(comm.send)
    _links.append(link)

    def closed(_msg: Any = None) -> None:
        link.close()
        if link in _links:
            _links.remove(link)

    comm.on_msg(lambda m: link.handle(m["content"]["data"]))
    comm.on_close(closed)
    link.handle((msg.get("content") or {}).get("data") or {"type": "hello"})


class Link:
    """One open comm: answers the extension's messages and pushes status changes to it."""

    def __init__(self, send: Callable[[dict], Any]) -> None:
        self._send = send
        self._last: Optional[dict] = None
        self._loading: Optional[tuple[str, float]] = None  # (model, fraction) while this link loads
        self._lock = threading.Lock()
        from ..widgets.ticker import subscribe

        self._unsubscribe = subscribe(self.push)

    # --- kernel -> front end ------------------------------------------------------------------
    def push(self, force: bool = False) -> None:
        """Send the status when it differs from the last one sent (or always, with ``force``)."""
        st = status(self._loading)
        with self._lock:
            if not force and st == self._last:
                return
            self._last = st
        self._send({"type": "status", **st})

    def send_models(self) -> None:
        from .. import api

        models = api.models()
        loaded = set(getattr(models, "loaded_paths", None) or ([models.loaded_path] if models.loaded_path else []))
        out = [
            {
                "name": m.name,
                "path": m.path,
                "size_bytes": int(m.size or 0),
                "quant": m.quantization or None,
                "source": m.source,
                "loaded": os.path.abspath(m.path) in loaded,
            }
            for m in models
        ]
        self._send({"type": "models", "models": out})

    def error(self, message: str) -> None:
        self._send({"type": "error", "message": message})

    # --- front end -> kernel ------------------------------------------------------------------
    def handle(self, data: dict) -> None:
        kind = data.get("type") if isinstance(data, dict) else None
        try:
            if kind == "hello":
                self.push(force=True)
                self.send_models()
            elif kind == "models":
                self.send_models()
            elif kind == "load":
                self._load(str(data.get("model") or ""))
            elif kind == "unload":
                from .. import api

                api.unload()
                self.push()
                self.send_models()
            elif kind == "unload_model":
                self._unload_model(data.get("name"))
            elif kind == "serve":
                self._serve(data.get("port"))
            elif kind == "stop_server":
                from .. import server

                srv = server.current()
                if srv is not None:
                    srv.stop()
                self.push()
            else:
                self.error(f"unknown message type {kind!r}")
        except Exception as e:  # a bad request never reaches the kernel as an exception
            self.error(str(e) or type(e).__name__)

    def _load(self, name: str) -> None:
        from .. import api

        if not name:
            self.error("load: no model given")
            return
        if self._loading is not None:
            self.error(f"already loading {self._loading[0]}")
            return
        self._loading = (name, 0.0)
        self.push()

        def progress(fraction: float) -> None:
            self._loading = (name, fraction)

        def run() -> None:
            try:
                api.load(name, progress=progress)
            except BaseException as e:  # noqa: BLE001 - reported to the front end
                self.error(f"Could not load {name}: {e}")
            finally:
                self._loading = None
                self.push()
                self.send_models()

        threading.Thread(target=run, name="lmnb-lab-load", daemon=True).start()

    def _unload_model(self, name: Any) -> None:
        from .. import api

        if not isinstance(name, str) or not name:
            raise ValueError(f"unload_model: name must be the name a model is loaded under, not {name!r}")
        if name not in api.registry().names():  # by its registry name only: never a near match
            raise ValueError(f"unload_model: no model is loaded as {name!r}")
        api.unload(name)
        self.push()
        self.send_models()

    def _serve(self, port: Any) -> None:
        from .. import server

        if port is not None and not isinstance(port, int):
            raise ValueError(f"serve: port must be a number, not {port!r}")
        server.serve(port=port)
        self.push()

    def close(self) -> None:
        self._unsubscribe()


def status(loading: Optional[tuple[str, float]] = None) -> dict:
    """What the status item shows, read without queueing on the engine (it may be busy)."""
    from .. import api, server
    from ..config import get_config

    eng = api.get_engine()
    info = eng.info
    load = loading or eng.loading
    srv = server.current()
    st = eng.status()
    if load is not None:
        state = "loading"
    elif info is None:
        state = "no model"
    elif eng.generating or eng.queue_depth:
        state = "generating"
    else:
        state = "idle"
    cfg = get_config()
    params = shown_parameters(cfg)
    if st.options is not None:  # what the loaded model runs with
        params["n_ctx"], params["n_parallel"] = st.options.n_ctx, st.options.n_parallel
    from ..version import __version__

    return {
        # while loading, the model being loaded (what the status item names)
        "model": load[0] if load is not None else info.name if info is not None else None,
        "state": state,
        "load_progress": round(load[1], 3) if load is not None else None,
        "server_url": srv.url if srv is not None else None,
        "tokens_per_s": round(eng.last_tokens_per_s, 1) if eng.last_tokens_per_s else None,
        "memory_bytes": int(st.rss_bytes),
        "model_bytes": int(st.model_bytes),
        "queue_depth": int(st.queue_depth),
        "parameters": params,
        "version": __version__,
        "models": loaded_models(),
    }


def loaded_models() -> list[dict]:
    """Every loaded model, the default first, as the status's ``models`` lists them."""
    from .. import api

    out = []
    for m in api.registry().loaded():
        try:
            eng = api.get_engine(m.name)
        except Exception:  # unloaded since the list was read
            continue
        if eng.loading is not None:
            state = "loading"  # a model being replaced under the same name
        elif eng.generating or eng.queue_depth:
            state = "generating"
        else:
            state = "idle"
        out.append({
            "name": m.name,
            "model": m.model.name,
            "model_bytes": int(m.model_bytes),
            "on_demand": bool(m.on_demand),
            "state": state,
            "lora": [{"name": n, "scale": s} for n, s in m.lora.items()],
        })
    return out
