"""Answers from documents: the sources put in front of a question, and the citations in the reply.

``chat(docs=NAME)`` puts the whole library in the prompt when it fits the token budget (as LM
Studio does with an attached document), otherwise the chunks that hybrid search ranks best, in
rank order, until the budget is spent. Each source is numbered; the model is asked to cite them as
``[1]``, and ``Completion.sources`` lists them with ``cited`` set for those the reply names.
With ``tools=``, the library is instead a ``search_documents`` tool the model calls itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..config import get_config
from .library import Library
from .ranking import Hit, where

if TYPE_CHECKING:
    from ..engine import Engine
    from ..tools import Tool
    from ..types import Completion

INSTRUCTIONS = (
    "Answer the question from the numbered sources below. After each statement, cite the sources it "
    "comes from by number in square brackets, like [1] or [2][3]. If the sources do not say, answer "
    "that they do not."
)
RETRIEVE = 20  # chunks retrieved before the budget picks
_CITE = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")


def budget(engine: Any, max_tokens: Optional[int]) -> int:
    """Tokens of sources a question may carry: ``LM.docs_context_tokens``, else half the context
    left after the reply's ``max_tokens``."""
    set_ = get_config().docs_context_tokens
    if set_ > 0:
        return set_
    options = getattr(engine.status(), "options", None)  # a remote backend may not say
    n_ctx = getattr(options, "n_ctx", None) or 4096
    return max(128, (n_ctx - (max_tokens or 512)) // 2)


def sources_for(name: str, question: str, engine: Optional["Engine"], limit: int) -> list[dict]:
    """The numbered sources for ``question``: the whole library when it fits ``limit`` tokens, else
    the best-ranked chunks that fit."""
    lib = Library(name)
    _, _, total = lib.store.counts()
    if total <= limit:
        rows = [c for f in lib.files() for c in lib.store.file_chunks(f.path)]
        picked = [_source(n, name, c.path, c.unit, c.text, c.start, c.end, c.page_start, c.page_end, c.id, None)
                  for n, c in enumerate(rows, start=1)]  # fmt: skip
        return picked
    found: list[Hit] = lib.search(question, engine, RETRIEVE)
    sizes = {cid: row.n_tokens for cid, row in lib.store.chunks([h.chunk_id for h in found]).items()}
    picked, spent = [], 0
    for h in found:
        n_tokens = sizes[h.chunk_id]
        if spent + n_tokens > limit:
            continue  # a smaller chunk further down may still fit
        spent += n_tokens
        picked.append(_source(len(picked) + 1, name, h.file, h.unit, h.text, h.start, h.end, h.page_start,
                              h.page_end, h.chunk_id, h.score))  # fmt: skip
    return picked


def _source(n: int, library: str, file: str, unit: str, text: str, start: int, end: int,
            page_start: Optional[int], page_end: Optional[int], chunk_id: int, score: Optional[float]) -> dict:  # fmt: skip
    return {"n": n, "library": library, "file": file, "where": where(file, unit, start, end, page_start, page_end),
            "unit": unit, "start": start, "end": end, "page_start": page_start, "page_end": page_end,
            "chunk_id": chunk_id, "score": score, "text": text, "cited": False}  # fmt: skip


def grounded_message(question: str, sources: list[dict]) -> str:
    """The user's turn with the sources in front of the question."""
    if not sources:
        return question
    body = "\n\n".join(f"[{s['n']}] {s['where']}\n{s['text']}" for s in sources)
    return f"{INSTRUCTIONS}\n\nSources:\n\n{body}\n\nQuestion: {question}"


def cited(text: str) -> set[int]:
    """The source numbers a reply cites (``[2]``, ``[1, 3]``, ``[4][5]``)."""
    out: set[int] = set()
    for m in _CITE.finditer(text or ""):
        out.update(int(x) for x in re.split(r"\s*[,;]\s*", m.group(1)))
    return out


def ground(name: str, messages: list[dict], engine: Any, max_tokens: Optional[int]) -> tuple[list[dict], Callable]:
    """For ``chat(docs=name)``: the messages with the sources put in the last user turn, and an
    ``on_done`` callback that puts the sources (``cited`` marked) on the ``Completion``."""
    question = messages[-1].get("content") if messages and messages[-1].get("role") == "user" else None
    if not isinstance(question, str):
        raise ValueError("docs= needs the question as the last user message, in text")
    local = engine if hasattr(engine, "count_tokens") else None  # a remote backend cannot embed here
    sources = sources_for(name, question, local, budget(engine, max_tokens))
    out = [*messages[:-1], {**messages[-1], "content": grounded_message(question, sources)}]

    def attach(result: "Completion") -> None:
        named = cited(result.text)
        result.sources = [{**s, "cited": s["n"] in named} for s in sources]

    return out, attach


def search_tool(name: str, engine: Any, k: int = 5) -> "Tool":
    """Library ``name`` as a ``search_documents`` tool, for chats with ``tools=``."""
    from ..tools import Tool

    Library(name)  # a missing library fails now, with its message, not at the model's first call

    def search_documents(query: str) -> str:
        """Search the user's documents and return the passages that best match, with where they are.

        Args:
            query: what to look for, in a few words.
        """
        local = engine if hasattr(engine, "count_tokens") else None
        found = Library(name).search(query, local, k)
        if not found:
            return "No passage matches."
        return "\n\n".join(f"[{h.where}]\n{h.text}" for h in found)

    return Tool.from_function(search_documents)
