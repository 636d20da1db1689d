"""``SafeHTML``: the HTML widget every pane uses, which takes only markup built by lmnb.markup.

A pane shows model names, file names, Hub data, request lines, log lines and error messages. An
``ipywidgets.HTML`` would run any markup among them, so this subclass escapes every value that is not
:class:`markupsafe.Markup` (made by :func:`lmnb.markup.html`, which escapes what it fills in): a
forgotten escape shows tags as text instead of running them.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from traitlets import validate

from ..markup import Markup, escape


class SafeHTML(widgets.HTML):
    """An ``ipywidgets.HTML`` whose ``value`` is plain text unless it is ``Markup``."""

    def __init__(self, value: Any = "", **kwargs: Any) -> None:
        super().__init__(value=value, **kwargs)

    @validate("value")
    def _escape(self, proposal: dict) -> str:
        value = proposal["value"]
        return value if isinstance(value, Markup) else escape(value)
