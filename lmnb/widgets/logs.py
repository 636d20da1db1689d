"""The Logs pane: llama.cpp's own log lines (the ring buffer behind ``%lm log``), live.

>>> from lmnb.widgets.logs import Logs
>>> Logs(level="warn")

A level filter, the last N lines in a scrolling box (newest at the bottom, kept in view), a Clear
button. The shared ticker thread redraws it about once a second, only when the buffer changed.
Log lines carry file paths and arbitrary text, so every line is HTML-escaped.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets

from ..markup import Markup, escape, html, join
from ._html import SafeHTML
from ._pane import StatusPane

LEVELS = ("debug", "info", "warn", "error")
_RANK = {name: i for i, name in enumerate(LEVELS)}
_LEVEL_COLORS = {"debug": "#757575", "warn": "#b26a00", "error": "#c62828"}


def render(records: list, empty: str = "No log lines.") -> Markup:
    """Log records as an escaped ``<pre>`` in a box that stays scrolled to the newest line."""
    if not records:
        body = html("<i>{}</i>", empty)
    else:
        lines = []
        for r in records:
            color = _LEVEL_COLORS.get(r.level)
            lines.append(html('<span style="color:{}">{}</span>', color, str(r)) if color else escape(str(r)))
        body = join(lines, "\n")
    # column-reverse makes the browser anchor the scroll position at the bottom (the newest line)
    return html(
        '<div class="lmnb-logs-box" style="max-height:24em;overflow:auto;display:flex;'
        'flex-direction:column-reverse;border:1px solid var(--jp-border-color2,#ddd)">'
        '<pre style="margin:0;padding:4px;font-size:85%;white-space:pre-wrap;overflow-wrap:anywhere">'
        "{}</pre></div>",
        body,
    )


class Logs(StatusPane, widgets.VBox):
    """llama.cpp's log lines, filtered by level.

    Parts: ``level`` (Dropdown: debug, info, warn, error — that level and above), ``last``
    (IntText: how many lines), ``clear_button``, ``refresh_button``, ``count`` (HTML: lines shown),
    ``note`` (HTML: which levels ``LM.log_level`` does not keep), ``output`` (HTML: the lines).

    Args:
        level: the lowest level shown.
        last: how many of the latest lines to show.
        live: redraw from the ticker thread when new lines arrive, until ``close()``.
    """

    _status_attr = "note"  # a failed control callback says why here

    def __init__(self, *, level: str = "info", last: int = 300, live: bool = True, **kwargs: Any) -> None:
        if level not in _RANK:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        super().__init__(**kwargs)
        self.add_class("lmnb-logs")
        self._lock = threading.Lock()
        self._key: Any = None

        self.level = widgets.Dropdown(options=list(LEVELS), value=level, description="Level",
                                      layout=widgets.Layout(width="12em"))  # fmt: skip
        self.last = widgets.BoundedIntText(value=last, min=1, max=100_000, description="Lines",
                                           layout=widgets.Layout(width="11em"))  # fmt: skip
        self.clear_button = widgets.Button(description="Clear", icon="trash", tooltip="Empty the log buffer",
                                           layout=widgets.Layout(width="auto"))  # fmt: skip
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="auto"))
        self.count = SafeHTML()
        self.note = SafeHTML()
        self.output = SafeHTML()
        self.children = [
            widgets.HBox([self.level, self.last, self.clear_button, self.refresh_button, self.count],
                         layout=widgets.Layout(align_items="center")),  # fmt: skip
            self.note,
            self.output,
        ]
        self.level.observe(self._guard(lambda _c: self.refresh(force=True)), "value")
        self.last.observe(self._guard(lambda _c: self.refresh(force=True)), "value")
        self.clear_button.on_click(self._guard(lambda _b: self.clear()))
        self.refresh_button.on_click(self._guard(lambda _b: self.refresh(force=True)))

        self.refresh(force=True)
        if live:
            self._go_live(self.refresh)

    def refresh(self, force: bool = False) -> bool:
        """Redraw if the buffer (or the filter) changed since the last redraw; returns whether it did."""
        from ..engine.logs import LOGS

        with self._lock:
            kept_level = LOGS.level  # follows LM.log_level (lmnb.engine.logs.follow_config)
            recs = LOGS.records()
            tail = recs[-1] if recs else None
            # a new line always changes the last record's time (a partial line's time changes too,
            # which only costs a redraw a second while llama.cpp is mid-line)
            key = (len(recs), tail and tail.time, tail and tail.text, self.level.value, self.last.value, kept_level)
            if not force and key == self._key:
                return False
            self._key = key
            floor = _RANK[self.level.value]
            shown = [r for r in recs if _RANK.get(r.level, 1) >= floor][-max(int(self.last.value), 1):]
            self.output.value = render(shown, "No log lines at this level yet." if recs else "The log is empty.")
            self.count.value = f"{len(shown)} of {len(recs)} kept lines"
            self.note.value = self._note(kept_level)
            return True

    def _note(self, kept_level: str) -> Markup:
        kept = _RANK.get(kept_level, 1)
        if _RANK[self.level.value] >= kept:
            return Markup("")
        dropped = ", ".join(LEVELS[_RANK[self.level.value]:kept])
        return html(
            "<i>LM.log_level is {}: {} lines are not being kept. "
            "<code>%config LM.log_level = '{}'</code> keeps them from now on.</i>",
            kept_level, dropped, LEVELS[_RANK[self.level.value]],
        )

    def clear(self) -> None:
        """Empty the log buffer (for every reader: ``%lm log`` too)."""
        from ..engine.logs import LOGS

        LOGS.clear()
        self.refresh(force=True)
