"""Waiting in tests for what the kernel or another process does in its own time."""

from __future__ import annotations

import time


def wait_until(check, timeout: float, what: str):
    """``check()``'s first true answer, looked for every 50 ms; fails the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return found
