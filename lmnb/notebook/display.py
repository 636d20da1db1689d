"""Showing a reply in a notebook cell: streamed Markdown, then a stats line.

The reply is one display output updated in place (``update_display_data``); its metadata
records the model file, its sha256 and every sampling parameter, so a saved notebook says
exactly how each answer was produced.

A reply is untrusted, and JupyterLab trusts the outputs of cells the user runs: a ``text/markdown``
output would run the reply's raw HTML and fetch its images. So the Markdown is rendered here, by
:func:`lmnb.markup.markdown`, and sent as sanitized ``text/html`` (with the text as ``text/plain``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional, Sequence

from ..markup import html, markdown as render_markdown, sources_text, with_sources
from ..types import Completion

# Updating the display on every token would send one growing message per token (quadratic
# traffic for long replies); ~30 updates a second looks the same to a reader.
_MIN_INTERVAL_S = 1 / 30
# Each update renders the whole reply again; for very long replies, update less often so that
# rendering never takes more than a tenth of the time (the decode thread shares the cores).
_RENDER_SHARE = 10
_CURSOR = " \u258d"


class _Reply:
    """A reply as sanitized HTML rendered from its Markdown, or as plain text."""

    def __init__(self, text: str, markdown: bool, thinking: str = "", thinking_open: bool = False,
                 sources: Sequence[dict] = (), anchor: str = "") -> None:  # fmt: skip
        self.text, self.markdown = text, markdown
        self.thinking, self.thinking_open = thinking, thinking_open
        self.sources, self.anchor = sources, anchor  # chat(docs=...): the numbered sources it cites

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = {"text/plain": f"[thinking]\n{self.thinking}\n[/thinking]\n{self.text}" if self.thinking else self.text}
        if self.sources:
            bundle["text/plain"] += "\n\nSources:\n" + sources_text(self.sources)
        if self.markdown or self.thinking or self.sources:
            answer = render_markdown(self.text) if self.markdown else html("<pre>{}</pre>", self.text)
            if self.sources:
                answer = with_sources(answer, self.sources, f"lmnb-src-{self.anchor}")
            folded = html('<details class="lmnb-thinking"{}><summary>Thinking</summary><pre>{}</pre></details>',
                          html(" open") if self.thinking_open else "", self.thinking) if self.thinking else ""  # fmt: skip
            bundle["text/html"] = str(html("{}{}", folded, answer)) or "\u200b"
        return bundle


class Stats:
    """The line under a reply: model, tokens, tokens/s, time to first token."""

    def __init__(self, line: str) -> None:
        self.line = line

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.line, "text/html": str(html("<sub>{}</sub>", self.line))}


class StreamingReply:
    """One reply being written into the current cell's output."""

    def __init__(self, *, markdown: bool = True, stream: bool = True) -> None:
        from IPython.display import display

        self.markdown = markdown
        self.text = ""
        self.thinking = ""  # a reasoning model's thinking, shown folded above the answer
        self._last = 0.0
        self._interval = _MIN_INTERVAL_S
        self._handle = display(_Reply(_CURSOR.strip(), markdown), display_id=True) if stream else None

    def add(self, delta: str) -> None:
        self.text += delta
        self._update()

    def think(self, delta: str) -> None:
        """A piece of the thinking (shown open while the model thinks, folded once it answers)."""
        self.thinking += delta
        self._update()

    def _update(self) -> None:
        now = time.monotonic()
        if self._handle is not None and now - self._last >= self._interval:
            thinking_now = not self.text
            self._handle.update(_Reply(self.text + _CURSOR, self.markdown, self.thinking, thinking_now))
            self._last = time.monotonic()
            self._interval = max(_MIN_INTERVAL_S, _RENDER_SHARE * (self._last - now))

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
        body = _Reply(text, self.markdown, result.reasoning or "", sources=result.sources, anchor=result.request_id)
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
        "dropped_messages": result.dropped_messages,  # earlier messages context_overflow left out of the prompt
        **({"sources": result.sources} if result.sources else {}),  # chat(docs=...): what the reply could cite
    }


def tool_step(step: Any) -> dict[str, str]:
    """One tool call of ``chat(tools=...)`` as a cell output: the call and its time, the result
    folded beneath (escaped: arguments and results are untrusted)."""
    call = step.call
    mark = "declined" if step.declined else ("error" if step.error else f"{step.seconds * 1000:.0f} ms")
    summary = html("<code>{}({})</code> &middot; {}", call.name, call.arguments, mark)
    body = html('<details class="lmnb-tool-step"><summary>&#128295; {}</summary><pre>{}</pre></details>',
                summary, step.output)  # fmt: skip
    plain = f"-> {call.name}({call.arguments}) [{mark}]\n{step.output}"
    return {"text/html": str(body), "text/plain": plain}
