"""``lmnb.studio()``: every pane in one tabbed dashboard, LM Studio's window in a notebook."""

from __future__ import annotations

from typing import Any, Optional

import ipywidgets as widgets

from . import TABS
from .chat import Chat
from .documents import Documents
from .logs import Logs
from .models import Models
from .parameters import Parameters
from .server import Server
from .system import System


class Studio(widgets.VBox):
    """Tabs Chat, Documents, Models, Parameters, System, Server and Logs over the kernel's one engine.

    The panes are attributes (``studio.chat``, ``studio.documents``, ``studio.models``,
    ``studio.parameters``, ``studio.system``, ``studio.server``, ``studio.logs``); each is also
    usable alone from ``lmnb.widgets``. ``close()`` stops the panes' background updates.
    """

    def __init__(self, conversation: str = "default", **chat_params: Any) -> None:
        self.chat = Chat(conversation, **chat_params)
        self.documents = Documents()
        self.models = Models()
        self.parameters = Parameters()
        self.system = System()
        self.server = Server()
        self.logs = Logs()
        self.panes = [self.chat, self.documents, self.models, self.parameters, self.system, self.server, self.logs]
        self.tabs = widgets.Tab(children=self.panes, titles=TABS)
        # the chat lists a library made in Documents, whose "last answer" is the chat's latest
        # (answers from cells come from the history, read again whenever the tab is shown)
        self.documents.listeners.append(self.chat.refresh_libraries)
        self.chat.reply_listeners.append(self.documents.show_completion)
        self.tabs.observe(self._tab_shown, "selected_index")
        super().__init__([self.tabs])
        self.add_class("lmnb-studio")

    def select(self, name: str) -> None:
        """Show the pane titled ``name`` (e.g. ``"Parameters"``)."""
        titles = [t.lower() for t in TABS]
        if name.lower() not in titles:
            raise ValueError(f"no pane {name!r}; panes are {', '.join(TABS)}")
        self.tabs.selected_index = titles.index(name.lower())

    def _tab_shown(self, change: dict) -> None:
        if change["new"] is not None and self.panes[change["new"]] is self.documents:
            self.documents.shown()

    @property
    def closed(self) -> bool:
        return self.comm is None

    def close(self) -> None:
        for pane in self.panes:
            pane.close()
        self.tabs.close()
        super().close()


def studio(conversation: str = "default", **chat_params: Any) -> Studio:
    """The notebook studio: chat, documents, models, parameters, system monitor, server and logs, in tabs.

    Calling it again returns the same studio (shown once more) unless the arguments differ, in
    which case the old one is closed.

    Args:
        conversation: the chat's conversation, shared with ``%%lm chat --name``.
        **chat_params: sampling parameters for the chat's replies (the rest follow the
            Parameters pane, which edits the session defaults).
    """
    global _current
    cur = _current
    # One studio per kernel, like LM Studio's one window: running the cell again shows the same
    # widgets (another view of them) instead of leaving the old panes polling in the background.
    if cur is not None and not cur.closed and cur.chat.conversation == conversation and not chat_params:
        return cur
    if cur is not None and not cur.closed:
        cur.close()
    _current = Studio(conversation, **chat_params)
    return _current


_current: Optional[Studio] = None
