"""Waiting on a condition with a deadline. The deadline is a hang guard only: no test
asserts on how long a wait took."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _poll(predicate: Callable[[], T], timeout: float, interval: float) -> T:
    """predicate()'s first truthy value, or its last value once the deadline has passed."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last or time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def wait_for(
    predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> T:
    """predicate()'s first truthy value; AssertionError naming `what` after the timeout."""
    last = _poll(predicate, timeout, interval)
    if not last:
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
    return last


def eventually(predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.05) -> bool:
    """True once predicate() holds, False if the deadline passed first (for `assert
    eventually(...), details`, where the test names what to show)."""
    return bool(_poll(predicate, timeout, interval))
