"""Jupyter widgets: LM Studio's window as notebook panes.

>>> lmnb.studio()                 # all panes in tabs (also `%lm ui`)
>>> from lmnb.widgets import Chat, Documents, Models, Parameters, System, Server, Logs
>>> Chat()                        # any pane alone

ipywidgets and anywidget are imported only when a widget is first used, so ``import lmnb``
stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module in this package
_PANES = {
    "Chat": "chat",
    "Documents": "documents",
    "Models": "models",
    "Parameters": "parameters",
    "System": "system",
    "Server": "server",
    "Logs": "logs",
    "Studio": "studio",  # `lmnb.studio()` makes one (the name `studio` here is the module)
    "NextTokenExplorer": "explorer",  # also `lmnb.explore(prompt)`
}

# the studio's tabs, in order (here, so that `%lm ui`'s parser needs no ipywidgets)
TABS = ("Chat", "Documents", "Models", "Parameters", "System", "Server", "Logs")

__all__ = sorted(_PANES)


def __getattr__(name: str) -> Any:
    mod = _PANES.get(name)
    if mod is None:
        raise AttributeError(f"module 'lmnb.widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


def __dir__() -> list[str]:
    return __all__
