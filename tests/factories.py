"""Building real list entries and identifiers for tests (no mocks: these go into the real store)."""

from __future__ import annotations

import datetime as dt
import itertools
import random

from mustcheck.identifiers import (
    IdentifierError,
    SubjectKind,
    citizen_id_check_character,
    organization_code_check_character,
    uscc_check_character,
    validate_uscc,
)
from mustcheck_gateway.policy.model import ListKind
from mustcheck_gateway.store import (
    EntryStatus,
    ListEntry,
    ListStore,
    PersonRole,
    ResponsiblePerson,
    entry_key,
)

_rng = random.Random(33)
_counter = itertools.count(1)
BODY_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWY"


def new_uscc(prefix: str = "91") -> str:
    body = "".join(_rng.choice(BODY_CHARS) for _ in range(8))
    first17 = prefix + "110108" + body + organization_code_check_character(body)
    return first17 + uscc_check_character(first17)


def new_citizen_id(born: dt.date | None = None) -> str:
    """A valid ID number; unless ``born`` is given, an adult's birth date is drawn too (a sequence number
    alone has only 1,000 values a day, and the tests share one store)."""
    day = born or dt.date(1950, 1, 1) + dt.timedelta(days=_rng.randrange(18_262))  # to 1999-12-31
    first17 = f"110105{day:%Y%m%d}{_rng.randrange(1000):03d}"
    code = first17 + citizen_id_check_character(first17)
    try:
        validate_uscc(code)
    except IdentifierError:
        return code
    return new_citizen_id(born)  # also a valid credit code, which a check would refuse as ambiguous


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)


# Long before any instant a test checks at: with it attested, three complete years are held (R6).
COMPLETE_SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def attest_complete_data(store: ListStore) -> int:
    """Record that the store holds complete list data since :data:`COMPLETE_SINCE` (as an administrator
    does), so that the green channel can be granted (R6). Returns the new data version."""
    return store.set_data_complete_since(
        COMPLETE_SINCE, actor="test", how="admin", at=dt.datetime.now(dt.UTC)
    )


def make_entry(
    subject: str,
    *,
    memorandum: str = "judgment-defaulters",
    list_kind: ListKind = ListKind.BLACK,
    kind: SubjectKind = SubjectKind.ORGANIZATION,
    effective: dt.datetime,
    punish_until: dt.datetime | None = None,
    display_until: dt.datetime | None = None,
    decision: dt.datetime | None = None,
    status: EntryStatus = EntryStatus.ACTIVE,
    status_changed_at: dt.datetime | None = None,
    severity: str | None = None,
    persons: tuple[tuple[str, str, PersonRole], ...] = (),
    name: str = "测试有限公司",
    department: str = "court",
) -> ListEntry:
    document = f"测试〔2026〕{next(_counter):06d}号"
    punish = punish_until or effective + days(365)
    return ListEntry(
        entry_id=entry_key("test", document),
        source="test",
        subject_code=subject,
        subject_name=name,
        subject_kind=kind,
        memorandum_id=memorandum,
        list_kind=list_kind,
        initiating_department=department,
        decision_document=document,
        reason="测试",
        severity=severity or ("none" if list_kind is ListKind.RED else "serious"),
        decision_date=decision or effective,
        effective_from=effective,
        punish_until=punish,
        display_until=display_until or punish,
        status=status,
        status_changed_at=status_changed_at,
        responsible_persons=tuple(ResponsiblePerson(pid, pname, role) for pid, pname, role in persons),
    )
