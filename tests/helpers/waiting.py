"""Polling until something becomes true, for tests that watch real processes and containers."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Whether ``predicate`` became true within ``timeout_s`` (asked every ``interval_s``, and once
    more at the end, so a slow machine's last chance is not lost)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
