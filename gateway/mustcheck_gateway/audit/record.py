"""What is logged: the event a caller hands in, the record that is stored, and the record's hash.

An :class:`AuditEvent` carries the raw subject identifier; it never reaches storage. Protecting it
(:mod:`.protect`) turns the event into a :class:`PendingRecord` (hash + ciphertext instead of the
subject); the writer then gives it a sequence number and the previous record's hash, which makes the
stored :class:`AuditRecord`.

A record's hash is SHA-256 over a domain tag, the previous record's hash and the canonical encoding
of every stored column except ``record_hash`` itself (JSON, keys sorted, no spaces, UTF-8). Changing
any stored value, or the order of records, changes a hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..store.codec import format_instant, parse_instant
from .protect import ProtectedSubject, SubjectProtector

GENESIS_HASH = "0" * 64
_HASH_DOMAIN = b"mustcheck.audit.record.v1\n"

# Stored columns, in table order; ``record_hash`` (last) is the only one its hash does not cover.
RECORD_COLUMNS: tuple[str, ...] = (
    "seq",
    "at",
    "kind",
    "caller_id",
    "department",
    "matter",
    "purpose",
    "authorization_ref",
    "subject_kind",
    "subject_hash",
    "hmac_key_id",
    "subject_enc",
    "enc_key_id",
    "outcome",
    "measure_ids",
    "data_version",
    "status",
    "latency_us",
    "detail",
    "prev_hash",
    "record_hash",
)


# ``json.dumps`` with these options builds an encoder each call: one, made once, encodes every record.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


# The journal's encoder of a row's line (``audit.journal`` writes the same: compact, UTF-8 as is).
_JOURNAL_LINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# A column's JSON as both encoders write it (``ensure_ascii=False``): strings by the C function they use,
# integers by ``int.__repr__`` (``bool`` is not ``int`` here: it is a type of its own), None as null.
_encode_text = json.encoder.encode_basestring
_SCALAR_JSON: dict[type, Any] = {
    str: _encode_text,
    int: int.__repr__,
    type(None): lambda _: "null",
}


# The outcome of the record (kind ``admin``) a gateway writes when it cut a torn journal tail off.
TAIL_CUT_OUTCOME = "audit.journal_tail_cut"

# The detail key that names the policy set the gateway served when it wrote the record (its digest,
# ``policy.sets``): covered by the record's hash, and so by its leaf in the Merkle tree. Records written
# before it was recorded lack it and verify as before.
POLICY_SET_KEY = "policy_set"

# Kinds of records that are checks an approval decision may rest on (a replay is not one).
CHECK_KINDS = frozenset({"check", "batch_item"})


_SHORTEST_IDENTIFIER = 15  # a first-generation citizen ID number


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing to log, as the gateway knows it (``subject`` is the raw identifier, or None).

    ``caller_id`` may be empty: a request refused before its caller was known is audited too.
    """

    kind: str
    caller_id: str
    department: str = ""
    matter: str = ""
    purpose: str = ""
    authorization_ref: str = ""
    subject: str | None = None
    subject_kind: str = ""
    outcome: str = ""
    measure_ids: tuple[str, ...] = ()
    data_version: int = 0
    status: str = "OK"
    latency_us: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: dt.datetime | None = None
    # The detail as canonical JSON, encoded once here (checked for the raw subject, then stored).
    detail_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("an audit event needs a kind")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("an audit event's time must be timezone-aware")
        object.__setattr__(self, "measure_ids", tuple(self.measure_ids))
        needle = (self.subject or "").strip()
        detail_text = _detail_json(self.detail)
        # The raw subject is stored only in protected form (R10): where a caller's text repeats it (a
        # purpose, a decision, a note), it is named, not written out — and the record is still written.
        # Only what could be an identifier (15 characters or more) is looked for: a short hostile subject
        # such as "r" is in other text by chance, not by a leak. The reason is a rule name the gateway
        # chose (``uscc.organization_code_check``), never the subject.
        if len(needle) >= _SHORTEST_IDENTIFIER:
            for name in ("purpose", "authorization_ref"):
                object.__setattr__(self, name, getattr(self, name).replace(needle, SUBJECT_NAMED))
            # The detail's values are walked only where its JSON text may hold the subject: a subject that
            # JSON writes as it is (no quote, backslash or control character) and is not in the text is in
            # none of its strings (most details: a reason and memoranda).
            if needle in detail_text or _JSON_ESCAPED.search(needle):
                object.__setattr__(
                    self,
                    "detail",
                    {
                        key: value if key == "reason" else _named(value, needle)
                        for key, value in dict(self.detail).items()
                    },
                )
                detail_text = _detail_json(self.detail)
        object.__setattr__(self, "detail_json", detail_text)

    def __repr__(self) -> str:  # the raw subject never goes into a log line or traceback
        subject = "None" if self.subject is None else "'<redacted>'"
        return f"AuditEvent(kind={self.kind!r}, caller_id={self.caller_id!r}, subject={subject}, ...)"


SUBJECT_NAMED = "[subject]"

# The characters canonical JSON (``ensure_ascii=False``) escapes: quote, backslash and the control
# characters below U+0020. Every other character it writes as it is.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def _detail_json(detail: Mapping[str, Any]) -> str:
    """The detail as it is stored: canonical JSON, checked to be serialisable."""
    if type(detail) is dict:
        text = _flat_canonical_json(detail)
        if text is not None:
            return text
    try:
        detail_text = canonical_json(dict(detail))
        if not _string_keys_only(detail):
            # Stored exactly as verification will encode it: keys that are not strings become strings,
            # in the order of the stored text. Done here, once, so that the writer stores the text as is.
            detail_text = canonical_json(json.loads(detail_text))
    except (TypeError, ValueError) as error:
        raise ValueError(f"audit event detail is not JSON-serialisable: {error}") from error
    return detail_text


def _flat_canonical_json(detail: dict[Any, Any]) -> str | None:
    """:func:`canonical_json` of a detail of string keys whose values are strings, integers, null or lists
    of strings (every check's detail: its memoranda, a reason, a token id), written piece by piece: the
    same text, without the general encoder's sorting of items; None for any other detail."""
    parts = []
    for key in detail:
        if type(key) is not str:
            return None
    for key in sorted(detail):
        value = detail[key]
        encode = _SCALAR_JSON.get(type(value))
        if encode is not None:
            piece = encode(value)
        elif type(value) is list and all(type(item) is str for item in value):
            piece = f"[{','.join(map(_encode_text, value))}]"
        else:
            return None
        parts.append(f"{_encode_text(key)}:{piece}")
    return f"{{{','.join(parts)}}}"


_PLAIN = frozenset({str, int, float, bool, type(None)})  # JSON values with no mapping inside


def _string_keys_only(value: Any) -> bool:
    """Whether every mapping in ``value`` (a detail's JSON value) has only string keys: then its canonical
    JSON reads back and encodes again to the same text."""
    # Plain dicts and lists of plain values (every detail the gateway writes) without the ABC checks.
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _PLAIN and not _string_keys_only(item)):
                return False
        return True
    if type(value) is list:
        return all(type(item) in _PLAIN or _string_keys_only(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(key, str) and _string_keys_only(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return all(_string_keys_only(item) for item in value)
    return True


def _named(value: Any, needle: str) -> Any:
    """``value`` (a detail's JSON value) with every occurrence of the raw subject named instead."""
    if isinstance(value, str):
        return value.replace(needle, SUBJECT_NAMED)
    if isinstance(value, dict):
        return {key: _named(item, needle) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_named(item, needle) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """An event with its subject protected and its time fixed, waiting for a sequence number.

    Its values are already in their stored form (instant as text, detail as canonical JSON), so
    that they cross to the writer process as plain values and are encoded once.
    """

    at: str
    kind: str
    caller_id: str
    department: str
    matter: str
    purpose: str
    authorization_ref: str
    subject_kind: str
    subject_hash: str | None
    hmac_key_id: str | None
    subject_enc: str | None
    enc_key_id: str | None
    outcome: str
    measure_ids: tuple[str, ...]
    data_version: int
    status: str
    latency_us: int
    detail_json: str
    # The digest of the policy set in force (empty: none known), stored in the detail under POLICY_SET_KEY.
    policy_set: str = ""

    @classmethod
    def from_event(
        cls,
        event: AuditEvent,
        protector: SubjectProtector,
        now: dt.datetime,
        policy_set: str = "",
        instants: dict[dt.datetime, str] | None = None,
    ) -> PendingRecord:
        """``instants``: instants already written as text (shared by the events of one append)."""
        protected = protector.protect(event.subject) if event.subject is not None else None
        at = event.at or now
        at_text = instants.get(at) if instants is not None else None
        if at_text is None:
            at_text = format_instant(at)
            if instants is not None:
                instants[at] = at_text
        return cls(
            at_text,
            event.kind,
            event.caller_id,
            event.department,
            event.matter,
            event.purpose,
            event.authorization_ref,
            event.subject_kind,
            protected.subject_hash if protected else None,
            protected.hmac_key_id if protected else None,
            protected.subject_enc if protected else None,
            protected.enc_key_id if protected else None,
            event.outcome,
            event.measure_ids,
            int(event.data_version),
            event.status,
            int(event.latency_us),
            event.detail_json,
            policy_set,
        )

    def as_values(self) -> tuple[Any, ...]:
        """The fields in order, as a plain tuple (what crosses to the writer process)."""
        return _pending_values(self)

    def chain(self, seq: int, prev_hash: str) -> tuple[str, tuple[Any, ...]]:
        """The record's hash at ``seq`` after ``prev_hash``, and its stored row.

        The columns are encoded once and serve both the hash and the row (this is the writer's hot path).
        :class:`AuditEvent` made the detail canonical; only a record naming a policy set has it decoded and
        encoded once more, to add the set's digest in its sorted place (the form verification encodes).
        """
        columns = _columns(seq, self.at, self, self._detail_text(), prev_hash)
        record_hash = _hash_columns(prev_hash, columns)
        return record_hash, (*columns.values(), record_hash)

    def _detail_text(self) -> str:
        """The detail's canonical JSON as the record holds it: with the policy set's digest, where the
        record names one, in its sorted place."""
        if not self.policy_set:
            return self.detail_json
        detail = json.loads(self.detail_json)
        detail[POLICY_SET_KEY] = self.policy_set
        return canonical_json(detail)

    def chain_line(self, seq: int, prev_hash: str) -> tuple[str, tuple[Any, ...], str]:
        """:meth:`chain`, and the row's journal line (``{"r":[...]}``, as the journal encodes a row).

        Each column's JSON is written once and serves both the hash's canonical JSON (keys sorted) and
        the line (columns in order): the same text either encoder writes, as both write a string with
        the same function and an integer with ``int.__repr__``. A column of another type (none is) is
        encoded the general way.
        """
        columns = _columns(seq, self.at, self, self._detail_text(), prev_hash)
        values = list(columns.values())
        try:
            pieces = [_SCALAR_JSON[type(value)](value) for value in values]
        except KeyError:  # a column that is not a string, an integer or null
            record_hash = _hash_columns(prev_hash, columns)
            row = (*values, record_hash)
            return record_hash, row, _JOURNAL_LINE.encode({"r": list(row)})
        canonical = ",".join([key + pieces[at] for key, at in _SORTED_COLUMNS])
        digest = hashlib.sha256(_HASH_DOMAIN)
        digest.update(prev_hash.encode("ascii", "replace"))
        digest.update(b"\n")
        digest.update(f"{{{canonical}}}".encode())
        record_hash = digest.hexdigest()
        return record_hash, (*values, record_hash), f'{{"r":[{",".join(pieces)},"{record_hash}"]}}'


_PENDING_FIELDS = tuple(f.name for f in dataclasses.fields(PendingRecord))
_pending_values = operator.attrgetter(*_PENDING_FIELDS)  # the fields' tuple, read in C

# The covered columns as canonical JSON orders them (keys sorted): each key as JSON with its colon, and
# where the column stands in the row. Every name is plain ASCII: its JSON is itself in quotes.
_SORTED_COLUMNS = tuple((f'"{name}":', RECORD_COLUMNS.index(name)) for name in sorted(RECORD_COLUMNS[:-1]))


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored record: everything of the event except the raw subject, plus its chain links."""

    seq: int
    at: dt.datetime
    kind: str
    caller_id: str
    department: str
    matter: str
    purpose: str
    authorization_ref: str
    subject_kind: str
    subject_hash: str | None
    hmac_key_id: str | None
    subject_enc: str | None
    enc_key_id: str | None
    outcome: str
    measure_ids: tuple[str, ...]
    data_version: int
    status: str
    latency_us: int
    detail: Mapping[str, Any]
    prev_hash: str
    record_hash: str
    # The log (gateway replica) the record is in: named on the shared PostgreSQL backend, where one
    # database holds every replica's log ("" on the embedded backend: the gateway's own log).
    log_id: str = ""

    @property
    def leaf_index(self) -> int:
        """The record's leaf in its log's Merkle tree (``seq − 1``)."""
        return self.seq - 1

    @property
    def policy_set(self) -> str:
        """The digest of the policy set its gateway served ("": written before digests were recorded)."""
        value = self.detail.get(POLICY_SET_KEY, "")
        return value if isinstance(value, str) else ""

    @property
    def protected_subject(self) -> ProtectedSubject | None:
        if self.subject_hash is None or self.hmac_key_id is None:
            return None
        if self.subject_enc is None or self.enc_key_id is None:
            return None
        return ProtectedSubject(self.subject_hash, self.hmac_key_id, self.subject_enc, self.enc_key_id)

    def to_row(self) -> tuple[Any, ...]:
        """The values stored for this record, in :data:`RECORD_COLUMNS` order."""
        columns = stored_columns(self)
        return tuple(columns[name] for name in RECORD_COLUMNS)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> AuditRecord:
        """Rebuild a record from stored values; raises ValueError/TypeError if they are unreadable."""
        values: dict[str, Any] = dict(zip(RECORD_COLUMNS, row, strict=True))
        values["seq"] = int(values["seq"])
        values["at"] = parse_instant(values["at"])
        values["measure_ids"] = tuple(json.loads(values["measure_ids"]))
        values["detail"] = json.loads(values["detail"])
        values["data_version"] = int(values["data_version"])
        values["latency_us"] = int(values["latency_us"])
        if not isinstance(values["detail"], dict):
            raise ValueError("detail is not a JSON object")
        return cls(**values)

    def as_export(self) -> dict[str, Any]:
        """The record as plain JSON values (the subject only as hash and ciphertext)."""
        exported: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "log_id" and not self.log_id:
                continue  # the embedded backend's records: exported as they always were
            value = getattr(self, f.name)
            if isinstance(value, dt.datetime):
                value = format_instant(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            exported[f.name] = value
        return exported


def stored_columns(record: AuditRecord) -> dict[str, Any]:
    """Column name → stored value (text instants, JSON text for lists and detail)."""
    return {**_covered_columns(record), "record_hash": record.record_hash}


def compute_record_hash(record: AuditRecord) -> str:
    """SHA-256 over the previous hash and every stored column but ``record_hash``, hex."""
    return _hash_columns(record.prev_hash, _covered_columns(record))


def _covered_columns(record: AuditRecord) -> dict[str, Any]:
    detail = canonical_json(dict(record.detail))
    return _columns(record.seq, format_instant(record.at), record, detail, record.prev_hash)


def _columns(
    seq: int, at: str, fields: PendingRecord | AuditRecord, detail: str, prev_hash: str
) -> dict[str, Any]:
    """Every stored column but ``record_hash``, in the stored order: what the record's hash covers.

    Written out field by field: this runs for every record written (its hash and its row). ``fields``
    gives the columns a pending record and a stored one hold alike.
    """
    return {
        "seq": seq,
        "at": at,
        "kind": fields.kind,
        "caller_id": fields.caller_id,
        "department": fields.department,
        "matter": fields.matter,
        "purpose": fields.purpose,
        "authorization_ref": fields.authorization_ref,
        "subject_kind": fields.subject_kind,
        "subject_hash": fields.subject_hash,
        "hmac_key_id": fields.hmac_key_id,
        "subject_enc": fields.subject_enc,
        "enc_key_id": fields.enc_key_id,
        "outcome": fields.outcome,
        "measure_ids": canonical_json(list(fields.measure_ids)),
        "data_version": fields.data_version,
        "status": fields.status,
        "latency_us": fields.latency_us,
        "detail": detail,
        "prev_hash": prev_hash,
    }


def _hash_columns(prev_hash: str, covered: dict[str, Any]) -> str:
    digest = hashlib.sha256(_HASH_DOMAIN)
    digest.update(prev_hash.encode("ascii", "replace"))
    digest.update(b"\n")
    digest.update(canonical_json(covered).encode())
    return digest.hexdigest()
