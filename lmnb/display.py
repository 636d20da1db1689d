"""Showing a reply in a notebook cell: streamed Markdown, then a stats line.

The reply is one display output updated in place (``update_display_data``); its metadata
records the model file, its sha256 and every sampling parameter, so a saved notebook says
exactly how each answer was produced.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

from .types import Completion

# Updating the display on every token would send one growing Markdown message per token (quadratic
# traffic for long replies); ~30 updates a second looks the same to a reader.
_MIN_INTERVAL_S = 1 / 30
_CURSOR = " \u258d"


class _Reply:
    """Markdown or plain text, with the same text/plain fallback."""

    def __init__(self, text: str, markdown: bool) -> None:
        self.text, self.markdown = text, markdown

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = {"text/plain": self.text}
        if self.markdown:
            bundle["text/markdown"] = self.text or "\u200b"
        return bundle


class Stats:
    """The line under a reply: tokens, tokens/s, time to first token."""

    def __init__(self, line: str) -> None:
        self.line = line

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.line, "text/markdown": f"<sub>{self.line}</sub>"}


class StreamingReply:
    """One reply being written into the current cell's output."""

    def __init__(self, *, markdown: bool = True, stream: bool = True) -> None:
        from IPython.display import display

        self.markdown = markdown
        self.text = ""
        self._last = 0.0
        self._handle = display(_Reply(_CURSOR.strip(), markdown), display_id=True) if stream else None

    def add(self, delta: str) -> None:
        self.text += delta
        now = time.monotonic()
        if self._handle is not None and now - self._last >= _MIN_INTERVAL_S:
            self._handle.update(_Reply(self.text + _CURSOR, self.markdown))
            self._last = now

    def progress(self, done: int, total: int) -> None:
        """Before the first token of a long prompt: how much of the prompt has been read."""
        if self._handle is not None and not self.text:
            self._handle.update(_Reply(f"Reading the prompt… {100 * done // max(total, 1)}% of {total} tokens",
                                       markdown=False))

    def finish(self, result: Completion, metadata: dict[str, Any], note: Optional[str] = None) -> None:
        from IPython.display import display

        text = result.text
        if note:
            text = f"{text}\n\n*{note}*" if self.markdown else f"{text}\n\n{note}"
        body = _Reply(text, self.markdown)
        md = {"lmnb": metadata}
        if self._handle is not None:
            self._handle.update(body, metadata=md)
        else:
            display(body, metadata=md)
        display(Stats(f"{result.model} · {result.stats_line()}"))


def reply_metadata(result: Completion, *, model_path: Optional[str], sha256: Optional[str], kind: str) -> dict[str, Any]:
    """What a saved notebook keeps about how a reply was produced."""
    return {
        "kind": kind,
        "model": result.model,
        "model_path": model_path,
        "model_sha256": sha256,
        "params": result.params.to_dict() if result.params else {},
        "seed": result.params.seed if result.params else None,
        "finish_reason": result.finish_reason,
        "usage": dataclasses.asdict(result.usage),
        "timings": dataclasses.asdict(result.timings),
        "request_id": result.request_id,
    }
