"""Running calls at once, as concurrent requests and gateways do."""

from __future__ import annotations

import threading
from collections.abc import Callable


def together(*calls: Callable[[], object]) -> None:
    """Run every call in a thread of its own, all at once; return when all have ended."""
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
