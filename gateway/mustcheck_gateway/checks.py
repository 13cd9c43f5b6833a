"""The check pipeline, transport-free: matter → subject → lookup → evaluation.

The gRPC service calls these steps around access control and auditing; they return
domain objects. ``clock`` is injectable so that tests can check at chosen instants.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from mustcheck.identifiers import SubjectKind, ValidSubject

from . import subjects
from .china_time import CHINA_STANDARD_TIME
from .errors import InvalidArgument, UnknownMatter, echo
from .evaluation import Evaluation, evaluate
from .policy.model import Matter, PolicySet
from .store.base import ListStore, Lookup

Clock = Callable[[], dt.datetime]
MAX_BATCH = 1000


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    evaluation: Evaluation
    data_version: int
    checked_at: dt.datetime
    legacy_code: bool


class Lookups(Protocol):
    """Where current lookups come from: the store itself, or the gateway's cache in front of it.

    ``current`` is the store's data version if the caller has just read it (a batch reads it once for
    all its items rather than once an item); ``None`` reads it afresh.
    """

    def lookup(self, subject_code: str, *, person: bool, current: int | None = None) -> Lookup: ...

    def lookup_many(self, subjects: Sequence[tuple[str, bool]], *, current: int) -> list[Lookup]:
        """``lookup`` of each ``(subject code, person)``, those not at hand read from the store together."""
        ...

    def current_version(self) -> int:
        """The data version lookups may be answered as of now."""
        ...


class CheckEngine:
    def __init__(
        self,
        store: ListStore,
        policy: PolicySet,
        *,
        clock: Clock = utc_now,
        legacy_codes: Callable[[], Collection[str]],
        lookups: Lookups,
    ) -> None:
        self.store = store
        self.lookups = lookups
        self.policy = policy
        self.clock = clock
        # The allow-list in force (R1): the policy file's codes, and those administrators add.
        self.legacy_codes = legacy_codes

    def matter(self, code: str) -> Matter:
        code = code.strip()
        if not code:
            raise InvalidArgument(
                "matter is required: a code from the query catalog", reason="matter.missing"
            )
        matter = self.policy.matters.get(code) or self.policy.matters.get(code.upper())
        if matter is None:
            raise UnknownMatter(f"unknown matter {echo(code)}: not in the query catalog")
        return matter

    def subject(self, raw: str, kind: SubjectKind | None, at: dt.datetime) -> ValidSubject:
        return subjects.validate(
            raw, kind, self.legacy_codes(), today=at.astimezone(CHINA_STANDARD_TIME).date()
        )

    def answer(
        self,
        subject: ValidSubject,
        matter: Matter,
        department: str,
        at: dt.datetime,
        *,
        as_of_version: int | None = None,
        current_version: int | None = None,
        policy: PolicySet | None = None,
        looked_up: Lookup | None = None,
    ) -> CheckAnswer:
        """The answer now, or — replay — with the list data as it was at ``as_of_version``.

        ``current_version``: the store's data version, read by the caller just before (see ``Lookups``);
        ``looked_up``: the subject's data, read by the caller with a batch's other subjects.
        ``policy``: the policy set to answer with (a replay's, as the audit record names it); default the
        one this gateway serves.
        """
        person = subject.kind is SubjectKind.PERSON
        if looked_up is not None:
            lookup = looked_up
        elif as_of_version is None:
            lookup = self.lookups.lookup(subject.code, person=person, current=current_version)
        else:
            lookup = self.store.lookup_as_of(subject.code, person=person, data_version=as_of_version)
        evaluation = evaluate(
            subject=subject,
            own_entries=lookup.own,
            linked_entries=lookup.linked,
            matter=matter,
            department=department,
            policy=self.policy if policy is None else policy,
            at=at,
            complete_since=lookup.complete_since,
        )
        return CheckAnswer(evaluation, lookup.data_version, at, subject.legacy)
