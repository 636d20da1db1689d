"""Worker-side state of one request being generated: its slot, prompt, sampler, and the text
it has produced (decoded incrementally, held back while it could still become a stop string)."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any

from ..types import SamplingParams
from .request import Request


def partial_suffix(text: str, marker: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``marker`` (0 to len - 1).

    Streamed text is held back by that much: a stop string, a tool call's opening tag or a
    thinking marker may be cut across two tokens."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


@dataclass
class Seq:
    """Worker-side state of one active request."""

    req: Request
    slot: int
    sampler: Any
    params: SamplingParams
    prompt: list[int]
    pending: list[int]  # prompt tokens not yet in the KV cache
    n_cached: int
    t_admit: float
    stops: list[str]
    max_tokens: int
    generated: list[int] = field(default_factory=list)
    last_token: int = -1
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    held: str = ""  # decoded text not yet emitted (it could be the start of a stop string)
    text: str = ""  # emitted text
    t_prompt_done: float = 0.0
    t_first: float = 0.0
    forced: list[int] = field(default_factory=list)  # tokens to put in next instead of sampling
    think_done: bool = False  # a reasoning model has closed (or skipped) its thinking
    recompute: bool = False  # paused mid-reply: ``pending`` re-reads its cells, then it goes on
    lora: tuple = ()  # the LoRA adapter set (``adapters.Key``) its cells are computed with

    @property
    def prefilling(self) -> bool:
        return bool(self.pending)

    def add_piece(self, piece: bytes) -> bool:
        """Take a sampled token's bytes: emit the text that can no longer become a stop string.

        Returns True at a stop string (the text before it is held, the rest dropped). Bytes of a
        character split across tokens wait in the decoder for the next token.
        """
        self.held += self.decoder.decode(piece)
        if not self.stops:
            self._emit_held()
            return False
        held = self.held
        hit = min(((held.find(x), x) for x in self.stops if x in held), default=None)
        if hit is not None:
            self.held = held[: hit[0]]
            return True
        keep = max(partial_suffix(held, x) for x in self.stops)  # tail that could still grow into a stop string
        if len(held) > keep:
            out = held[: len(held) - keep]
            self.held = held[len(held) - keep :]
            self.text += out
            self.req.emit(out)
        return False

    def flush(self) -> None:
        """Emit what is held at the end. A character cut off mid-bytes (``max_tokens`` ended the
        reply inside it) is dropped rather than shown as U+FFFD; text after a stop string too."""
        # No final decode: incomplete trailing bytes stay in the decoder and are dropped. At a stop
        # string, `held` was already cut where it begins.
        self._emit_held()

    def _emit_held(self) -> None:
        if self.held:
            self.text += self.held
            self.req.emit(self.held)
            self.held = ""
