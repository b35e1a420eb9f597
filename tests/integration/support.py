"""What every integration test file needs: waiting for the system to get somewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def eventually(
    check: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.25
) -> Any:
    """The first truthy result of `check`, polled until `timeout`; else an AssertionError
    naming `what` and the last result."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
