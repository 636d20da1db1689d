"""What every pane shares for talking to the user: coloured status lines, callbacks that show their
errors there instead of raising into the frontend, one rule for turning an error into a message,
and live updates from the shared ticker thread that stop on ``close()``.

    class Logs(StatusPane, widgets.VBox):
        _status_attr = "note"                         # the line _say/_guard write to by default
        ...
        button.on_click(self._guard(lambda _b: self.clear()))
        self._say("Saved.", "ok")                    # or ("…", "warn", self.other_line)
        self._go_live(self.refresh)                  # close() unsubscribes

Status text is escaped: a line is built with :func:`lmnb.markup.html` and shown in a
:class:`~lmnb.widgets._html.SafeHTML`, so model names, file names and error messages never run.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from traitlets import TraitError

from ..errors import LmnbError
from ..markup import Markup, html
from . import ticker as _ticker
from ._html import SafeHTML

# Status colours by kind ("info" keeps the theme's text colour).
COLORS = {"info": "", "ok": "#2e7d32", "warn": "#b26a00", "error": "#c62828"}

# Seconds between redraws driven from a background thread (download and load progress).
UI_INTERVAL = 0.1


def describe(error: BaseException) -> str:
    """An error as a status line says it.

    lmnb's errors, ``ValueError`` and ``TraitError`` are written for users: their message alone.
    Anything else is a surprise, so its type comes first (``KeyError: 'x'``). A trailing period is
    dropped, so the message reads the same alone or inside a sentence.
    """
    text = str(error).rstrip(".")
    readable = isinstance(error, (LmnbError, ValueError, TraitError))
    if readable and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def status_html(text: str, kind: str = "info") -> Markup:
    """One status line: ``text`` (escaped) in the colour of ``kind``; empty text clears the line."""
    if not text:
        return Markup("")
    color = COLORS[kind]
    style = "overflow-wrap:anywhere" + (f";color:{color}" if color else "")
    return html('<span style="{}">{}</span>', style, text)


class StatusPane:
    """Mixin for a pane (list it before the ipywidgets base class).

    ``_status_attr`` names the ``SafeHTML`` that ``_say`` and ``_guard`` write to when given no
    other line.
    """

    _status_attr = "status"
    _unsubscribe: Optional[Callable[[], None]] = None

    def _say(self, text: str, kind: str = "info", target: Optional[SafeHTML] = None) -> None:
        """Show ``text`` in a status line (the default one unless ``target``); ``""`` clears it."""
        line = getattr(self, self._status_attr) if target is None else target
        line.value = status_html(text, kind)

    def _guard(self, fn: Callable[..., Any], target: Optional[SafeHTML] = None) -> Callable[..., None]:
        """``fn`` as a callback that shows its errors in a status line instead of raising them into
        the frontend (or into whoever changed a trait it observes)."""

        def run(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - a widget callback must never raise
                self._show_error(e, target)

        return run

    def _show_error(self, error: BaseException, target: Optional[SafeHTML] = None) -> None:
        """How ``_guard`` reports an error; a pane may reword it."""
        self._say(describe(error), "error", target)

    def _go_live(self, refresh: Callable[[], object]) -> None:
        """Call ``refresh()`` about once a second from the shared ticker thread until ``close()``."""
        self._unsubscribe = _ticker.subscribe(refresh)

    def close(self) -> None:
        """Stop the live updates (the ticker thread ends when no other pane is live) and close."""
        unsub, self._unsubscribe = self._unsubscribe, None
        if unsub is not None:
            unsub()
        super().close()  # type: ignore[misc]  # the ipywidgets base class
