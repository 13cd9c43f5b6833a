"""Running calls at once, as concurrent requests and gateways do, and waiting for what they do."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# What another thread or process must have done by now: generous, for a busy 2-core machine (a bound
# on correctness, not a performance assertion).
WAIT_S = 5.0


def together(*calls: Callable[[], object]) -> None:
    """Run every call in a thread of its own, all at once; return when all have ended."""
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (asked every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())
