"""Where a gateway counts its callers' person lookups for the daily quotas (R8: no bulk enumeration).

On PostgreSQL the store counts them (:class:`StorePersonQuota`: one statement a lookup), so that a
quota is exact across every replica and worker of a deployment. With an embedded store (one gateway)
the workers of a multi-process gateway count in the table they share (:mod:`.workers.limits`), and a
single process in its memory (:class:`~.auth.ratelimit.PersonQuota`). After a restart every kind
continues from today's audit records (:mod:`.quota_seed`).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

from .auth.ratelimit import PersonQuota
from .workers.limits import SharedPersonQuota, SharedTable


@runtime_checkable
class CountingStore(Protocol):
    def take_person_lookup(self, caller_id: str, day: str, quota: int) -> bool: ...

    def seed_person_lookups(self, caller_id: str, day: str, count: int) -> None: ...

    def person_lookups(self, caller_id: str, day: str) -> int: ...


class StorePersonQuota:
    """:class:`~.auth.ratelimit.PersonQuota` counted in the store."""

    day_of = staticmethod(PersonQuota.day_of)

    def __init__(self, store: CountingStore) -> None:
        self._store = store

    def take(self, caller_id: str, at: dt.datetime, quota: int) -> bool:
        return self._store.take_person_lookup(caller_id, self.day_of(at).isoformat(), quota)

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
