"""The top of the Models pane: every model loaded in the kernel, each with its own Unload, and the
name the pane's next load goes under.

>>> from lmnb.widgets.loaded import LoadedModels
>>> LoadedModels()          # normally seen as ``Models().loaded``

A row is the name the model is loaded under ("default" for the default model), the model's own
name and its memory. The list follows the registry's listeners: a model loaded or unloaded anywhere
(a cell, the lab panel, another pane) shows up or goes at once. Model names come from files: they
are filled into escaping templates (``lmnb.markup.html``) and shown in ``SafeHTML``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import ipywidgets as widgets

from ..markup import Markup, html
from ..tables import human_bytes
from ._html import SafeHTML
from ._pane import StatusPane


def loaded_label(m: Any) -> Markup:
    """One loaded model (a ``lmnb.registry.Loaded``): ``default · SmolLM2-135M-Instruct · 97 MB``."""
    how = " · loaded on demand" if m.on_demand else ""
    how += "".join(f" · LoRA {n} ×{s:g}" for n, s in getattr(m, "lora", {}).items())
    return html("<b>{}</b> · {} · {}{}", m.name, m.model.name, human_bytes(m.model_bytes), how)


class LoadedModels(StatusPane, widgets.VBox):
    """The loaded models, each with an Unload button, and a "load as" name field.

    Parts: ``rows`` (VBox, one row per loaded model, the default first), ``unload_buttons``
    (registry name -> its Unload button), ``load_as`` (Text), ``status`` (HTML line).
    ``listeners``: called with no argument after the list changed (the Models pane marks its
    loaded files then). ``close()`` stops following the registry.
    """

    def __init__(self, **kwargs: Any) -> None:
        from .. import api

        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self.unload_buttons: dict[str, widgets.Button] = {}
        self.listeners: list[Callable[[], None]] = []
        self.rows = widgets.VBox()
        self.load_as = widgets.Text(
            placeholder="optional: a name to load beside the others",
            description="Load as",
            layout=widgets.Layout(width="30em"),
        )
        self.status = SafeHTML()
        hint = SafeHTML(Markup("<span style='opacity:.7'>empty: Load replaces the default model</span>"))
        self.children = [
            SafeHTML(Markup("<b>Loaded</b> &middot; models in this kernel")),
            self.rows,
            widgets.HBox([self.load_as, hint]),
            self.status,
        ]
        self._registry = api.registry()
        self._registry.listeners.append(self._on_registry)
        self.refresh()

    @property
    def name(self) -> Optional[str]:
        """The "load as" name (``None`` when empty: a load replaces the default model)."""
        return self.load_as.value.strip() or None

    def refresh(self) -> list:
        """List the loaded models again, each with its Unload; returns ``lmnb.loaded()``."""
        loaded = self._registry.loaded()
        with self._lock:
            old = list(self.rows.children)
            buttons: dict[str, widgets.Button] = {}
            rows: list[widgets.Widget] = []
            for m in loaded:
                unload = widgets.Button(description="Unload", icon="eject", tooltip=f"Unload {m.model.name} ({m.name})",
                                        layout=widgets.Layout(width="auto"))  # fmt: skip
                unload.on_click(self._guard(lambda _b, n=m.name: self.unload(n)))
                buttons[m.name] = unload
                rows.append(widgets.HBox([unload, SafeHTML(loaded_label(m))]))
            if not rows:
                rows.append(SafeHTML("No model is loaded: load one below (Discover or My Models)."))
            self.unload_buttons = buttons
            self.rows.children = rows
        for row in old:  # their comms go with them
            for child in getattr(row, "children", ()):
                child.close()
            row.close()
        return loaded

    def unload(self, name: str = "default") -> bool:
        """Unload the model loaded under ``name`` (what its Unload button does); returns whether one was."""
        from .. import api

        model = next((m.model.name for m in self._registry.loaded() if m.name == name), None)
        if model is None:
            self._say(f"No model is loaded as {name!r}.", "warn")
            self.refresh()
            return False
        had = api.unload(name)  # the registry's listeners redraw the list
        self._say(f"Unloaded {model} ({name}).", "ok")
        return had

    def _on_registry(self, _name: str, _info: Any) -> None:
        self.refresh()
        for fn in list(self.listeners):
            fn()

    def close(self) -> None:
        reg = getattr(self, "_registry", None)
        if reg is not None and self._on_registry in reg.listeners:
            reg.listeners.remove(self._on_registry)
        super().close()
