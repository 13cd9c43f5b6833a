"""An audit outage, as both backends record it: since when and why the log refused records, how many.

While the log cannot make records durable (embedded: the disk is nearly full or the writer process
restarts; PostgreSQL: the database cannot be written) every append is refused (UNAVAILABLE), so the
outage cannot be logged while it lasts. It is logged when it ends: one ``admin`` record, outcome
``audit.available_again``, whose detail names when the log became unavailable, why, and how many
appends it refused meanwhile (:meth:`Outage.detail`). Until that record is durable the outage is kept,
so a recovery that fails to write it is tried again and nothing of the outage is forgotten.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from ..store.codec import format_instant

AVAILABLE_AGAIN = "audit.available_again"


class Outage:
    """Whether the log refuses records, since when, why and how often (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: tuple[dt.datetime, str] | None = None
        self._refused = 0

    def seen(self, reason: str | None) -> str | None:
        """Note that the log is unavailable for ``reason`` (None: it is not); returns ``reason``."""
        if reason is not None and self._since is None:
            with self._lock:
                if self._since is None:
                    self._since = (dt.datetime.now(dt.UTC), reason)
        return reason

    def refused(self, reason: str) -> None:
        """An append was refused for ``reason``."""
        self.seen(reason)
        with self._lock:
            self._refused += 1

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def detail(self) -> dict[str, Any] | None:
        """The record detail of the outage now ending (None: there was none)."""
        with self._lock:
            if self._since is None:
                return None
            since, why = self._since
            return {"refused": self._refused, "since": format_instant(since), "why": why}

    def ended(self, detail: dict[str, Any]) -> None:
        """The outage ``detail`` described is recorded: forget it (refusals since then start a new count)."""
        with self._lock:
            self._since = None
            self._refused = max(0, self._refused - int(detail["refused"]))
