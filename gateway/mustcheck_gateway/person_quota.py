"""Where a gateway counts its callers' person lookups for the daily quotas (R8: no bulk enumeration).

On PostgreSQL the store counts them (:class:`StorePersonQuota`: one statement a lookup), so that a
quota is exact across every replica and worker of a deployment. With an embedded store (one gateway)
the workers of a multi-process gateway count in the table they share (:mod:`.workers.limits`), and a
single process in its memory (:class:`~.auth.ratelimit.PersonQuota`). After a restart every kind
continues from today's audit records (:mod:`.quota_seed`).

The store's count is a round trip to PostgreSQL: the gateway takes it in its event loop's executor
(``blocks``: :meth:`~.auth.access.AccessControl.subject_counted`), never on the loop itself. Its rows of
past days are deleted by the gateway that first counts on a new day (each gateway once a day: O(1) a
lookup), keeping yesterday's for a replica whose clock is a little behind.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import ClassVar, Protocol, runtime_checkable

import structlog

from .auth.ratelimit import PersonQuota
from .workers.limits import SharedPersonQuota, SharedTable

log = structlog.get_logger("mustcheck.quota")

# Days kept before the current one (China Standard Time): a replica whose clock is behind may still be
# counting yesterday when this one's day has turned.
KEPT_DAYS = 1


@runtime_checkable
class CountingStore(Protocol):
    def take_person_lookup(self, caller_id: str, day: str, quota: int) -> bool: ...

    def seed_person_lookups(self, caller_id: str, day: str, count: int) -> None: ...

    def person_lookups(self, caller_id: str, day: str) -> int: ...

    def prune_person_lookups(self, before: str) -> int: ...


class StorePersonQuota:
    """:class:`~.auth.ratelimit.PersonQuota` counted in the store."""

    day_of = staticmethod(PersonQuota.day_of)
    blocks: ClassVar[bool] = True  # a round trip to the store: taken off the event loop

    def __init__(self, store: CountingStore) -> None:
        self._store = store
        self._pruned_on: dt.date | None = None  # the day this gateway last deleted past days' rows on
        self._prune_lock = threading.Lock()

    def take(self, caller_id: str, at: dt.datetime, quota: int) -> bool:
        day = self.day_of(at)
        if day != self._pruned_on:
            self._prune(day)
        return self._store.take_person_lookup(caller_id, day.isoformat(), quota)

    def _prune(self, day: dt.date) -> None:
        """Delete the rows of days that can no longer count (before ``day`` less :data:`KEPT_DAYS`), once a
        day: a failure is logged and tried again on the next lookup; the lookup is counted all the same."""
        if not self._prune_lock.acquire(blocking=False):
            return  # another thread of this gateway is pruning
        try:
            if day == self._pruned_on:
                return
            before = day - dt.timedelta(days=KEPT_DAYS)
            try:
                deleted = self._store.prune_person_lookups(before.isoformat())
            except Exception as error:
                log.warning("person_lookups_prune_failed", before=before.isoformat(), error=repr(error))
                return
            self._pruned_on = day
            if deleted:
                log.info("person_lookups_pruned", before=before.isoformat(), rows=deleted)
        finally:
            self._prune_lock.release()

    def seed(self, caller_id: str, day: dt.date, count: int) -> None:
        self._store.seed_person_lookups(caller_id, day.isoformat(), count)

    def used(self, caller_id: str, at: dt.datetime) -> int:
        return self._store.person_lookups(caller_id, self.day_of(at).isoformat())


AnyPersonQuota = PersonQuota | SharedPersonQuota | StorePersonQuota


def person_quota_for(store: object, table: SharedTable | None) -> AnyPersonQuota:
    """The store's count if it keeps one (PostgreSQL), else the workers' shared table, else memory."""
    if isinstance(store, CountingStore):
        return StorePersonQuota(store)
    if table is not None:
        return SharedPersonQuota(table)
    return PersonQuota()
