"""Jupyter widgets: LM Studio's panels, as ipywidgets.

>>> from lmnb.widgets import Models
>>> Models()            # Discover (Hugging Face search, quantizations, download) + My Models

ipywidgets is imported only when a widget is first used, so ``import lmnb`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Models"]


def __getattr__(name: str) -> Any:
    if name == "Models":
        from .models import Models

        return Models
    raise AttributeError(f"module 'lmnb.widgets' has no attribute {name!r}")
