"""Documents to chunks: passages packed whole into chunks of a token budget, with overlap.

A chunk's location is the span of the passages it holds, exactly: a citation of a chunk points
at the lines (or paragraphs, or PDF page lines) that hold what it says. Only a passage longer
than a chunk is cut, at sentences, then words, then characters; its pieces keep its location.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from .readers import Document, Passage

_SENTENCE_END = re.compile(r"(?<=[.!?;:\u3002\uff01\uff1f])\s+")


@dataclass(frozen=True)
class Chunk:
    """Passages joined by newlines, with their token count and location (as :class:`Passage`)."""

    text: str
    n_tokens: int
    start: int
    end: int
    page_start: Optional[int] = None
    page_end: Optional[int] = None


@dataclass(frozen=True)
class _Unit:
    text: str
    cost: int  # tokens of the text alone, less what the counter adds to any text (BOS)
    passage: Passage


def chunk(doc: Document, count_tokens: Callable[[str], int], *, size: int = 256, overlap: int = 32) -> list[Chunk]:
    """Pack ``doc``'s passages into chunks of at most ``size`` tokens.

    Args:
        doc: the document, as :func:`lmnb.docs.readers.read` returns it.
        count_tokens: tokens of a text for the model that will read or embed the chunks.
        size: the most tokens a chunk holds (by ``count_tokens`` of its text).
        overlap: a chunk starts with the last passages of the one before, up to this many tokens,
            so that a fact at a chunk's edge is also found with what comes before it.

    Returns:
        The chunks in reading order, each with its text's exact ``n_tokens``.

    Raises:
        ValueError: ``size`` leaves no room for text, or ``overlap`` is not below ``size``.
    """
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be at least 0 and below size (got size={size}, overlap={overlap})")
    if not doc.passages:
        return []
    base = count_tokens("")  # what the counter adds to every text, e.g. the BOS token
    if base >= size:
        raise ValueError(f"size={size} leaves no room for text (the counter adds {base} tokens to any text)")
    sep = max(count_tokens("\n") - base, 0)
    units = _units(doc.passages, count_tokens, size, base)

    chunks: list[Chunk] = []
    carry: list[int] = []  # units of the chunk before that open the next one
    i = 0
    while i < len(units):
        held = list(carry)
        # estimates from the units' own counts; the exact count of the joined text decides below
        total = base + sum(units[j].cost + sep for j in held)
        while held and total + units[i].cost > size:
            total -= units[held.pop(0)].cost + sep
        new = 0
        while i < len(units) and (new == 0 or total + units[i].cost <= size):
            total += units[i].cost + sep
            held.append(i)
            i += 1
            new += 1
        text = "\n".join(units[j].text for j in held)
        n = count_tokens(text)
        while n > size and len(held) > 1:  # tokens merged across the joins: give one unit back
            if new > 1:
                held.pop()
                i -= 1
                new -= 1
            else:
                held.pop(0)
            text = "\n".join(units[j].text for j in held)
            n = count_tokens(text)
        first, last = units[held[0]].passage, units[held[-1]].passage
        chunks.append(Chunk(text, n, first.start, last.end, first.page, last.page))
        carry, room = [], overlap
        for j in reversed(held[1:]):  # never the whole chunk: each chunk brings something new
            room -= units[j].cost + sep
            if room < 0:
                break
            carry.insert(0, j)
    return chunks


def _units(passages: list[Passage], count: Callable[[str], int], size: int, base: int) -> list[_Unit]:
    units = []
    for p in passages:
        n = count(p.text)
        if n <= size:
            units.append(_Unit(p.text, n - base, p))
        else:
            units.extend(_Unit(piece, count(piece) - base, p) for piece in _split(p.text, count, size, base))
    return units


def _split(text: str, count: Callable[[str], int], size: int, base: int) -> list[str]:
    """``text`` cut into pieces of at most ``size`` tokens each: whole sentences where they fit,
    else whole words, else runs of characters; consecutive pieces packed up to ``size``."""
    pieces: list[tuple[str, int]] = []
    for sentence in _SENTENCE_END.split(text):
        if not sentence.strip():
            continue
        n = count(sentence)
        if n <= size:
            pieces.append((sentence, n - base))
            continue
        for word in sentence.split():
            n = count(word)
            if n <= size:
                pieces.append((word, n - base))
            else:
                pieces.extend((run, count(run) - base) for run in _split_chars(word, count, size))
    groups: list[list[str]] = []
    cur: list[str] = []
    total = base
    for piece, cost in pieces:
        if cur and total + 1 + cost > size:  # + 1: the space that joins them, at most a token
            groups.append(cur)
            cur, total = [], base
        total += cost + (1 if cur else 0)
        cur.append(piece)
    groups.append(cur)
    return [" ".join(g) for group in groups for g in _fit(group, count, size)]


def _fit(group: list[str], count: Callable[[str], int], size: int) -> list[list[str]]:
    """``group`` as is when its joined text fits ``size``, else halved until each part does."""
    if len(group) == 1 or count(" ".join(group)) <= size:
        return [group]
    half = len(group) // 2
    return _fit(group[:half], count, size) + _fit(group[half:], count, size)


def _split_chars(word: str, count: Callable[[str], int], size: int) -> list[str]:
    """A word with no break in it (a hash, a URL, base64) in runs of at most ``size`` tokens."""
    runs = []
    rest = word
    while rest:
        hi = min(len(rest), size * 32)  # counting a megabyte to cut a few hundred tokens is waste
        if count(rest[:hi]) <= size:
            cut = hi
        else:
            lo, cut = 1, 1  # at least one character: always progress
            while lo <= hi:
                mid = (lo + hi) // 2
                if count(rest[:mid]) <= size:
                    cut, lo = mid, mid + 1
                else:
                    hi = mid - 1
        runs.append(rest[:cut])
        rest = rest[cut:]
    return runs
