"""Jupyter widgets: LM Studio's panels, as ipywidgets.

>>> from lmnb.widgets import Models
>>> Models()            # Discover (Hugging Face search, quantizations, download) + My Models

ipywidgets is imported only when a widget is first used, so ``import lmnb`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {"Models": "models"}

__all__ = ["Models"]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'lmnb.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lmnb.widgets.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
