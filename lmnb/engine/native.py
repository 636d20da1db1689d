"""The compiled greedy step (``greedy_steps.c``): several greedy tokens of a single stream per call.

The wheel's build compiles ``greedy_steps.c`` into ``_greedy_steps.so`` next to this module
(``hatch_build.py``) where a C compiler is found; without it, or with ``LMNB_NATIVE=0``, or if its
batch layout does not match llama_cpp's, ``stepper()`` returns None and the engine takes every
step in Python, with the same results.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any, Optional

LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_greedy_steps" + (".dll" if sys.platform == "win32" else ".so"))
BUDGET_S = 0.025  # a call returns after this long, so a stream's events still come at display pace
MAX_TOKENS = 1024  # per call

_lib: Any = None  # the loaded library, False where there is none
_lock = threading.Lock()  # engines load models on their own threads


def _load() -> Any:
    global _lib
    with _lock:
        if _lib is None:
            _lib = False
            if os.environ.get("LMNB_NATIVE", "1") != "0" and os.path.isfile(LIBRARY):
                try:
                    lib = ctypes.CDLL(LIBRARY)
                except OSError:
                    return None
                if _layout_matches(lib):
                    lib.greedy_steps.restype = ctypes.c_int32
                    lib.greedy_steps.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int32] * 5 + [
                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
                    _lib = lib
        return _lib or None


def _layout_matches(lib: Any) -> bool:
    """Whether the C side's batch struct is llama_cpp's ``llama_batch`` (size and field offsets)."""
    import llama_cpp as C

    got = (ctypes.c_int64 * 8)()
    lib.greedy_steps_layout(got)
    names = ("n_tokens", "token", "embd", "pos", "n_seq_id", "seq_id", "logits")
    want = [ctypes.sizeof(C.llama_batch)] + [getattr(C.llama_batch, n).offset for n in names]
    return list(got) == want


class GreedySteps:
    """One engine's use of the compiled loop: its output buffer and its interrupt flag."""

    def __init__(self, lib: Any) -> None:
        import llama_cpp as C

        self._fn = lib.greedy_steps
        self._decode = ctypes.cast(C.llama_decode, ctypes.c_void_p).value
        self._logits = ctypes.cast(C.llama_get_logits_ith, ctypes.c_void_p).value
        self._out = (ctypes.c_int32 * MAX_TOKENS)()
        self._rc = ctypes.c_int32(0)
        self.interrupt = ctypes.c_int32(0)  # set from any thread: the running call returns after its token
        self.calls = 0

    def run(self, ctx: Any, batch_address: int, n_vocab: int, is_eog: Any, token: int, pos: int, seq: int,
            max_n: int) -> tuple[list[int], int]:  # fmt: skip
        """Decode ``token`` at ``pos`` of sequence ``seq`` and greedily on, up to ``max_n`` tokens
        (fewer at an end-of-generation token, the interrupt flag or the time budget).

        Args:
            ctx, batch_address, n_vocab: the model's context, its batch (room for one entry at
                least) and vocabulary size.
            is_eog: one byte per token, nonzero where it ends a generation (a numpy uint8 array).

        Returns:
            The tokens sampled, and llama_decode's code where a decode failed (0 otherwise).
        """
        self.calls += 1
        n = self._fn(self._decode, self._logits, ctx, batch_address, token, pos, seq, n_vocab,
                     max(1, min(max_n, MAX_TOKENS)), is_eog.ctypes.data, ctypes.addressof(self._out),
                     int(BUDGET_S * 1e9), ctypes.addressof(self.interrupt), ctypes.addressof(self._rc))  # fmt: skip
        return self._out[:n], self._rc.value


def stepper() -> Optional[GreedySteps]:
    """A ``GreedySteps`` for one engine, or None where the compiled loop is not available, or where
    llama_cpp's ``llama_decode`` has been wrapped in Python (a profiler's or a test's: the wrapper
    then keeps seeing every decode)."""
    lib = _load()
    if lib is None:
        return None
    try:
        return GreedySteps(lib)
    except ctypes.ArgumentError:  # not a C function any more
        return None
