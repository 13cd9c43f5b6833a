"""The gateway's background tasks (change feed, head publisher, audit health, refusal flusher)."""

from __future__ import annotations

import asyncio
import contextlib


async def cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
