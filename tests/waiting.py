"""Waiting on a state, never on a sleep: poll until it holds (the limit is generous, for busy machines)."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, step: float = 0.02) -> Any:
    """Call ``cond`` until it returns something truthy (returned); its last value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step)
    return cond()
