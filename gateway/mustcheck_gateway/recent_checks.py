"""Which subjects each caller checked lately: all that its ``Watch`` streams may ever name.

A ``Watch`` stream itemises a change only for subjects its own caller checked (and was audited for)
within the longest freshness tolerance of its grant's matters: the subjects whose answers the
caller's cache can still hold. A subject is noted once the check has passed its grant and
authorisation and before its lookup, so that a change landing between the lookup and the answer is
never missed (every check noted here leaves its audit record, allowed or failed).

The memory is the gateway process's own: an SDK client sends its checks and its stream over one
channel, so both reach the same process. Entries older than the longest tolerance of any matter are
dropped as new ones arrive, and a caller's memory holds at most ``max_per_caller`` subjects: beyond
that the oldest are forgotten early, and until their window has passed the caller's streams are told
"everything changed" for every change (never a subject's name), so that no cached answer outlives a
change it was not told about.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple

_NEVER = float("-inf")
DEFAULT_MAX_PER_CALLER = 100_000


class Selection(NamedTuple):
    """The caller's subjects in a change, and whether subjects it forgot early may be among them."""

    subjects: list[str]
    unsure: bool


class RecentChecks:
    def __init__(
        self,
        horizon_s: float,
        *,
        max_per_caller: int = DEFAULT_MAX_PER_CALLER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.horizon_s = horizon_s
        self.max_per_caller = max_per_caller
        self.clock = clock
        # Per caller: subject -> when it was last checked, oldest first.
        self._by_caller: dict[str, OrderedDict[str, float]] = {}
        # Per caller: when the newest subject it forgot early was checked.
        self._forgotten: dict[str, float] = {}

    def note(self, caller_id: str, subject: str) -> float | None:
        """``caller_id`` checks ``subject`` now; returns when it was noted before (None: it was not)."""
        return self.note_many(caller_id, (subject,))[subject]

    def note_many(self, caller_id: str, subjects: Iterable[str]) -> dict[str, float | None]:
        """:meth:`note` for several subjects at one instant; returns each one's previous note (of its
        first occurrence), for :meth:`withdraw_many`."""
        now = self.clock()
        noted = self._by_caller.get(caller_id)
        if noted is None:
            noted = self._by_caller[caller_id] = OrderedDict()
        previous: dict[str, float | None] = {}
        for subject in subjects:
            if subject not in previous:
                previous[subject] = noted.get(subject)
            noted[subject] = now
            noted.move_to_end(subject)
        self._prune(noted, now)
        while len(noted) > self.max_per_caller:
            _, at = noted.popitem(last=False)
            self._forgotten[caller_id] = max(self._forgotten.get(caller_id, _NEVER), at)
        return previous

    def withdraw_many(self, caller_id: str, previous: dict[str, float | None]) -> None:
        """Undo :meth:`note_many`."""
        for subject, at in previous.items():
            self.withdraw(caller_id, subject, at)

    def withdraw(self, caller_id: str, subject: str, previous: float | None) -> None:
        """Undo :meth:`note` for a check that ended without its audit record: the subject's changes are
        named only for checks that were audited (as before the note, if it had been checked before)."""
        subjects = self._by_caller.get(caller_id)
        if subjects is None or subject not in subjects:
            return
        if previous is None:
            del subjects[subject]
        else:
            subjects[subject] = previous

    def select(self, caller_id: str, subjects: Collection[str], window_s: float) -> Selection:
        """Those of ``subjects`` that ``caller_id`` checked within the last ``window_s`` seconds, and
        whether it forgot early a subject checked within that window (it may be among them)."""
        since = self.clock() - window_s
        unsure = self._forgotten.get(caller_id, _NEVER) >= since
        checked = self._by_caller.get(caller_id)
        if not checked:
            return Selection([], unsure)
        if len(subjects) > len(checked):  # a large change: walk the caller's few subjects instead
            own = [subject for subject, at in checked.items() if at >= since and subject in subjects]
        else:
            own = [subject for subject in subjects if checked.get(subject, _NEVER) >= since]
        return Selection(own, unsure)

    def count(self, caller_id: str) -> int:
        return len(self._by_caller.get(caller_id, ()))

    def __len__(self) -> int:
        return sum(len(subjects) for subjects in self._by_caller.values())

    def _prune(self, subjects: OrderedDict[str, float], now: float) -> None:
        oldest = now - self.horizon_s
        while subjects:
            first, at = next(iter(subjects.items()))
            if at >= oldest:
                return
            del subjects[first]
