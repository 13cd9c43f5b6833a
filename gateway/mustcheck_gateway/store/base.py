"""The store interface and the list-entry model every backend speaks.

A backend (``sqlite`` embedded by default; PostgreSQL for scale-out) implements
:class:`ListStore`. Everything above the store sees only these types. Every write
moves the data version, a counter that only ever grows, and appends the entry's new
state to its history (who, when, what), so any past state can be replayed.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mustcheck import EntryStatus as EntryStatus  # one definition, shared with the SDK
from mustcheck.identifiers import SubjectKind

from ..auth.model import Caller, Grant, TokenRecord
from ..feedback import Feedback
from ..policy.model import ListKind

if TYPE_CHECKING:
    from .changes import SubjectChange
    from .policy_sets import StoredPolicySet

UTC = dt.UTC


class PersonRole(enum.Enum):
    LEGAL_REPRESENTATIVE = "legal_representative"
    PRINCIPAL = "principal"
    DIRECTLY_RESPONSIBLE = "directly_responsible"


@dataclass(frozen=True, slots=True)
class ResponsiblePerson:
    """A natural person an organisation's entry reaches (R7, 33号 §14)."""

    person_id: str
    name: str
    role: PersonRole


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One red- or black-list record of one subject, as decided by its initiating department.

    ``punish_until`` ends the measures period (for a red list: the incentives);
    ``display_until`` ends publication. ``status_changed_at`` is when the status last
    changed (a repair ends the bad record at that instant, R5/R6).
    """

    entry_id: str
    source: str
    subject_code: str
    subject_name: str
    subject_kind: SubjectKind
    memorandum_id: str
    list_kind: ListKind
    initiating_department: str
    decision_document: str
    reason: str
    severity: str
    decision_date: dt.datetime
    effective_from: dt.datetime
    punish_until: dt.datetime
    display_until: dt.datetime
    status: EntryStatus = EntryStatus.ACTIVE
    status_changed_at: dt.datetime | None = None
    responsible_persons: tuple[ResponsiblePerson, ...] = ()


# An entry in the form the store writes, built where the entry is validated (an import's worker
# processes) so that the writer only writes: its column values in ``ENTRY_COLUMNS`` order (the entry id
# first), its persons as (person_id, name, role) in the entry's order, and its history snapshot as UTF-8
# JSON. A plain tuple: a million of them cross from the workers per import, and unpickling named tuples
# takes three times as long.
EncodedEntry = tuple[tuple[Any, ...], tuple[tuple[str, str, str], ...], bytes]


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One state an entry has been in: written at ``data_version`` by ``actor``."""

    entry_id: str
    data_version: int
    action: str
    actor: str
    changed_at: dt.datetime
    entry: ListEntry


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a check reads, as of one data version: the subject's own entries and, for a
    person, the organisations' entries that name them (R7)."""

    data_version: int
    own: list[ListEntry]
    linked: list[ListEntry]
    # Since when the store attests complete list data at this version (R6); None: not attested.
    complete_since: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Completeness:
    """Since when the store holds complete list data (R6), and who said so (see ``completeness``)."""

    complete_since: dt.datetime
    set_by: str
    set_at: dt.datetime
    # "admin" (set by an administrator) or "import" (a complete snapshot was imported).
    how: str
    data_version: int


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    inserted: int
    updated: int
    unchanged: int
    data_version: int
    applied: bool


@dataclass(frozen=True, slots=True)
class AuthData:
    """Every caller, grant and token, read at one ``auth_version``."""

    version: int
    callers: list[Caller]
    grants: list[Grant]
    tokens: list[TokenRecord]


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The latest signed checkpoint a gateway (``replica``) published of its own audit chain."""

    replica: str
    seq: int
    record_hash: str
    key_id: str
    signature: str
    signed_at: dt.datetime
    published_at: dt.datetime
    # The latest signed tree head of the replica's audit log (canonical JSON; "" from older gateways).
    tree_head: str = ""


class StoreError(Exception):
    """The store could not do what was asked (the message says what and why)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; asking again later may work (callers see UNAVAILABLE)."""


class EntryNotFound(StoreError):
    pass


class ListStore(Protocol):
    """What the gateway needs from a store. Implementations must be thread-safe."""

    def data_version(self) -> int:
        """The current data version (0 for an empty store)."""
        ...

    def lookup(self, subject_code: str, *, person: bool) -> Lookup:
        """The subject's entries and the data version, read in one consistent snapshot."""
        ...

    def lookup_many(self, subjects: Sequence[tuple[str, bool]]) -> list[Lookup]:
        """``lookup`` of each ``(subject code, person)``, in order, all in one consistent snapshot and a
        few statements (a batch's subjects: one round trip, not one per subject)."""
        ...

    def lookup_as_of(self, subject_code: str, *, person: bool, data_version: int) -> Lookup:
        """The subject's entries as they were at ``data_version`` (point-in-time replay)."""
        ...

    def data_version_at(self, instant: dt.datetime) -> int:
        """The data version in force at ``instant``."""
        ...

    def entries_for_subject(self, subject_code: str) -> list[ListEntry]:
        """Every entry of the subject, in any status, including expired ones (R6 needs history)."""
        ...

    def entries_naming_person(self, person_id: str) -> list[ListEntry]:
        """Every entry of an organisation that names ``person_id`` as a responsible person (R7)."""
        ...

    def write_entries(self, entries: Iterable[ListEntry], *, actor: str, action: str) -> int:
        """Insert or replace entries in one transaction; the data version moves once. Returns it."""
        ...

    def set_status(
        self, entry_id: str, status: EntryStatus, *, actor: str, action: str, at: dt.datetime
    ) -> int:
        """Change one entry's status (objection, repair, revocation); returns the new data version."""
        ...

    def get_entry(self, entry_id: str) -> ListEntry:
        """The entry, or ``EntryNotFound``."""
        ...

    def import_entries(
        self, entries: Iterable[EncodedEntry], *, actor: str, action: str, keep: Callable[[], bool]
    ) -> ImportOutcome:
        """Insert or update entries in one transaction; ``keep()`` decides commit or rollback at the end.

        An entry equal to the stored one is left alone (counted unchanged)."""
        ...

    def replace_entry(self, entry: ListEntry, *, actor: str, action: str, at: dt.datetime) -> int: ...

    def history_of_subject(self, subject_code: str) -> Sequence[HistoryRecord]: ...

    def all_entries(self, *, list_kind: str | None = None) -> Iterator[ListEntry]: ...

    def legacy_codes(self) -> dict[str, str]: ...

    def get_feedback(self, caller_id: str, approval_id: str) -> Feedback | None: ...

    def add_feedback(self, feedback: Feedback) -> None: ...

    def feedback_between(self, since: dt.datetime | None, until: dt.datetime | None) -> list[Feedback]: ...

    def feedback_check_seqs(self) -> set[int]: ...

    def feedback_check_refs(self) -> set[tuple[str, int]]:
        """(log id, seq) of every check feedback rests on (log id "": feedback named no log)."""
        ...

    def allow_legacy_code(self, code: str, reason: str, *, actor: str, at: dt.datetime) -> int: ...

    def disallow_legacy_code(self, code: str, *, actor: str, at: dt.datetime) -> int | None:
        """Withdraw an admitted code; the new data version, or ``None`` if it was not admitted."""
        ...

    def data_completeness(self, as_of_version: int | None = None) -> Completeness | None:
        """The "data complete since" setting in force (at ``as_of_version``); ``None``: none (R6)."""
        ...

    def set_data_complete_since(self, since: dt.datetime, *, actor: str, how: str, at: dt.datetime) -> int:
        """Record since when the list data is complete; every answer's green channel may change."""
        ...

    def history(self, entry_id: str) -> Sequence[HistoryRecord]:
        """Every state the entry has been in, oldest first."""
        ...

    def count_entries(self) -> int: ...

    def subject_changes(self, after: int, *, limit: int = 1000) -> list[SubjectChange]:
        """What each data version after ``after`` touched, oldest first, at most ``limit`` versions."""
        ...

    def publish_audit_head(self, head: AuditHead, proof: Sequence[bytes] = ()) -> None:
        """Keep ``head`` as the replica's latest if it extends the one kept (larger seq, or the same seq and
        hash; and its tree head, with ``proof``, a consistency proof from the kept tree head); raise
        ``audit_heads.HeadRejected`` otherwise."""
        ...

    def audit_heads(self) -> list[AuditHead]:
        """Every gateway's latest published checkpoint, by replica id."""
        ...

    def keep_policy_set(self, digest: str, body: str, *, served_by: str, at: dt.datetime) -> bool:
        """Keep the policy set ``digest`` names (its canonical text ``body``) unless the store holds it;
        True if it was new. Sets are never deleted (replays load them)."""
        ...

    def policy_set(self, digest: str) -> StoredPolicySet | None:
        """The policy set kept under ``digest``, or None."""
        ...

    def policy_sets(self) -> list[StoredPolicySet]:
        """Every kept policy set (without its text), oldest first."""
        ...

    def close(self) -> None: ...

    # -- callers, grants, tokens (R8); every write moves the auth version ----------------

    def auth_version(self) -> int: ...

    def load_auth(self) -> AuthData:
        """Every caller, grant and token, read in one consistent snapshot."""
        ...

    def put_caller(self, caller: Caller) -> int: ...

    def put_first_caller(self, caller: Caller, token: TokenRecord) -> bool:
        """Store ``caller`` and its ``token`` only if the store has no caller yet, in one write
        transaction (so that of gateways starting together on an empty store, one bootstraps); whether
        it did."""
        ...

    def put_grant(self, grant: Grant) -> int: ...

    def delete_grant(self, caller_id: str) -> bool:
        """Remove the caller's grant; false if it had none."""
        ...

    def put_token(self, token: TokenRecord) -> int: ...

    def revoke_token(self, token_id: str, at: dt.datetime) -> TokenRecord:
        """Mark a token revoked; ``StoreError`` if there is no such token."""
        ...
