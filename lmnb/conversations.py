"""Named conversations, shared by ``%%lm chat --name N``, ``lmnb.chat(..., conversation=N)`` and
the chat pane; safe to change from several threads."""

from __future__ import annotations

import logging
import threading
from typing import Optional

from .types import Message

_log = logging.getLogger("lmnb")


# what a message gives the chat template (``stats`` and the like stay out)
_TEMPLATE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


class Conversation:
    """A named chat, shared by ``%%lm chat --name N``, ``lmnb.chat(..., conversation=N)`` and the
    Chat widget. Assistant messages also carry ``"stats"`` (tokens, tokens/s, time to first token).

    Safe to change from several threads: replies are appended on the replies thread while a
    widget or a cell edits the list. Read ``messages`` for a look; change it only through the
    methods (or inside ``with conv.lock:`` followed by ``changed()``).
    """

    def __init__(self, name: str, system: Optional[str] = None) -> None:
        self.name = name
        self.system = system
        self.messages: list[Message] = []
        self.lock = threading.RLock()
        # called with the conversation after every change (a widget showing it redraws)
        self.listeners: list = []

    def all_messages(self) -> list[Message]:
        """What the chat template sees: the system prompt, then role and content of each message."""
        with self.lock:
            sys = [{"role": "system", "content": self.system}] if self.system else []
            return sys + [{k: m[k] for k in _TEMPLATE_KEYS if k in m} for m in self.messages]

    def snapshot(self) -> list[Message]:
        """A copy of the messages (each message copied too)."""
        with self.lock:
            return [dict(m) for m in self.messages]

    def append_turn(self, user: Message, *replies: Message) -> None:
        """Add a question and its replies together (with tools: the calls, their results and the
        answer), so no reader sees one without the others."""
        with self.lock:
            self.messages.extend((user, *replies))
        self.changed()

    def replace(self, messages: list[Message]) -> None:
        """Set the whole list of messages (a widget's edit)."""
        with self.lock:
            self.messages[:] = [dict(m) for m in messages]
        self.changed()

    def pop_last_turn(self) -> list[Message]:
        """Remove the last user message and everything after it; returns what was removed."""
        with self.lock:
            last = max((i for i, m in enumerate(self.messages) if m.get("role") == "user"), default=None)
            if last is None:
                return []
            removed = self.messages[last:]
            del self.messages[last:]
        self.changed()
        return removed

    def clear(self) -> None:
        """Forget the messages (the system prompt stays)."""
        with self.lock:
            self.messages.clear()
        self.changed()

    def changed(self) -> None:
        """Tell the listeners the messages changed."""
        for fn in list(self.listeners):
            try:
                fn(self)
            except Exception:  # a closed widget must not break the conversation
                _log.debug("conversation listener failed", exc_info=True)

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"Conversation({self.name!r}, {len(self.messages)} messages)"


_conversations: dict[str, Conversation] = {}
_conversations_lock = threading.Lock()
DEFAULT_CONVERSATION = "default"


def named(name: str) -> Conversation:
    """The named conversation (created empty on first use)."""
    with _conversations_lock:
        conv = _conversations.get(name)
        if conv is None:
            conv = _conversations[name] = Conversation(name)
        return conv


def reset(name: Optional[str] = None) -> None:
    """Forget a conversation's messages (all conversations when ``name`` is None)."""
    # cleared in place, so that widgets showing a conversation see it empty
    for conv in list(_conversations.values()) if name is None else [_conversations.get(name)]:
        if conv is not None:
            conv.clear()
