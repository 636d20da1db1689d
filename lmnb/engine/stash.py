"""Idle sequences' KV cells, kept in RAM instead of in the shared KV cache.

Every decode step attends over the shared cache up to its highest used cell, whichever sequence
owns the cells: llama.cpp masks other sequences' cells out, but still walks them. Measured on
SmolLM2-135M with 2 threads, a single stream decoded 13% slower beside 1,800 idle cells of a
2,048-cell cache and 28% slower beside 7,900 of 8,192. So while anything is being decoded, the
cells of finished requests (a conversation's earlier turns, a shared system prompt) wait here,
copied out with llama.cpp's per-sequence state functions, and go back into the cache when a
request continues them: the next turn still evaluates only its new tokens.

Only the engine's worker thread uses a ``Stash``.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional


def default_budget() -> int:
    """Bytes of RAM idle sequences may take: an eighth of the machine's memory, at most 4 GiB."""
    try:
        import psutil

        total = psutil.virtual_memory().total
    except Exception:  # no psutil reading: assume a small machine
        total = 8 << 30
    return min(4 << 30, total // 8)


class Stash:
    """Saved cells per sequence id (slot), within a byte budget."""

    def __init__(self, budget: Optional[int] = None) -> None:
        self._budget = budget  # None: default_budget(), read when first needed
        self._saved: dict[int, Any] = {}  # slot -> ctypes byte array from llama_state_seq_get_data
        self.bytes = 0

    @property
    def budget(self) -> int:
        if self._budget is None:
            self._budget = default_budget()
        return self._budget

    def __contains__(self, slot: int) -> bool:
        return slot in self._saved

    def slots(self) -> list[int]:
        return list(self._saved)

    def save(self, ctx: Any, slot: int) -> bool:
        """Copy ``slot``'s cells out of the cache (the caller then removes them). False: not saved."""
        import llama_cpp as C

        size = int(C.llama_state_seq_get_size(ctx, slot))
        if size <= 0 or size > self.budget:
            return False
        buf = (ctypes.c_uint8 * size)()
        if int(C.llama_state_seq_get_data(ctx, buf, size, slot)) <= 0:
            return False
        self.drop(slot)
        self._saved[slot] = buf
        self.bytes += size
        return True

    def restore(self, ctx: Any, slot: int, into: int) -> bool:
        """Put ``slot``'s saved cells back in the cache as sequence ``into`` (replacing what it
        held). The saved copy is kept; False when the cache has no room for them."""
        import llama_cpp as C

        buf = self._saved[slot]
        return int(C.llama_state_seq_set_data(ctx, buf, len(buf), into)) > 0

    def drop(self, slot: int) -> None:
        buf = self._saved.pop(slot, None)
        if buf is not None:
            self.bytes -= len(buf)

    def clear(self) -> None:
        self._saved.clear()
        self.bytes = 0
