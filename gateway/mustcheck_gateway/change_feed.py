"""The change feed: follows the store's data version and tells the caches and ``Watch`` streams.

``catch_up`` reads what each new data version touched (``store.subject_changes``) and hands it to
the listeners — the gateway's lookup cache — before returning, so the next lookup sees the write.
A background task polls the store, so writes made through any process (another replica, an
offline tool) reach the caches and every ``Watch`` subscriber within one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import structlog

from .store.base import ListStore
from .store.changes import SubjectChange
from .tasks import cancelled

log = structlog.get_logger("mustcheck.gateway")
Listener = Callable[[list[SubjectChange]], None]
DEFAULT_POLL_INTERVAL_S = 0.05
_PAGE = 1000


class ChangeFeed:
    def __init__(self, store: ListStore, *, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self.store = store
        self.poll_interval_s = poll_interval_s
        self.version = store.data_version()
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._polled_at = float("-inf")  # when the store's version was last read by a poll
        self._loop: asyncio.AbstractEventLoop | None = None
        self._advanced: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def catch_up(self, current: int | None = None) -> int:
        """Hand every change up to ``current`` (default: the store's version now) to the listeners."""
        if current is not None and current <= self.version:
            return self.version
        with self._lock:
            target = self.store.data_version() if current is None else current
            advanced = False
            while self.version < target:
                changes = self.store.subject_changes(self.version, limit=_PAGE)
                if not changes:  # versions that touched no subject
                    self.version = target
                    break
                for listener in self._listeners:
                    listener(changes)
                self.version = changes[-1].data_version
                advanced = True
        if advanced:
            self._wake_subscribers()
        return self.version

    # -- subscribers (Watch streams) on the event loop ------------------------------------

    def start(self) -> None:
        """Start polling on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._advanced = asyncio.Event()
        self._task = self._loop.create_task(self._poll(), name="mustcheck-change-feed")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None

    async def wait_beyond(self, version: int, timeout: float) -> None:
        """Wait until the feed is past ``version``, or ``timeout`` has passed."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.version <= version:
            assert self._advanced is not None, "start() the feed first"
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            event = self._advanced
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _wake_subscribers(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._signal()
        else:
            loop.call_soon_threadsafe(self._signal)

    def _signal(self) -> None:
        assert self._advanced is not None
        self._advanced.set()
        self._advanced = asyncio.Event()

    def leased_version(self, lease_s: float) -> int | None:
        """The version caught up to, if a poll confirmed it within ``lease_s`` seconds; else ``None``
        (the polls are failing or late: ask the store)."""
        if time.monotonic() - self._polled_at <= lease_s:
            return self.version
        return None

    async def _poll(self) -> None:
        while True:
            try:
                started = time.monotonic()
                self.catch_up()
                self._polled_at = started
            except Exception as error:  # the store is briefly unavailable: try again next round
                log.warning("change_feed_poll_failed", error=str(error))
            await asyncio.sleep(self.poll_interval_s)
