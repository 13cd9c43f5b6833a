"""Replay of one audited check: the answer as it was given, so that it equals the caller's receipt.

An auditor names the audit record (``CheckRequest.replay_of``: ``<log id>-<seq>`` as a receipt names it,
or ``<seq>`` in this gateway's log) and the subject. The answer is evaluated as the record says the
check was: the original caller's department, the record's data version and instant, and the policy set
the record names by digest, loaded from the store (``store/policy_sets.py``). A record whose policy set
is not known is refused by name, never answered with today's policies (docs/audit-log.md, "Replay").
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from mustcheck._generated.v1 import check_pb2 as pb
from mustcheck.identifiers import SubjectKind

from ..audit.backends import holds_every_replica
from ..audit.errors import KeyRingError
from ..audit.keys import KeyKind, KeyRing
from ..audit.protect import subject_hash
from ..audit.record import CHECK_KINDS, AuditRecord
from ..checks import CheckAnswer, CheckEngine
from ..errors import FailedPrecondition, InvalidArgument, NotFound
from ..policy.model import Matter, PolicySet
from ..policy.sets import MAX_DIGEST_LENGTH, PolicySetError, from_stored

# "<log id>-<seq>" or "<seq>"; a log id is a replica id (letters, digits, '.', '_', ':' and '-').
_REFERENCE = re.compile(r"(?:(?P<log>[0-9A-Za-z._:-]{1,100})-)?(?P<seq>[1-9][0-9]{0,17})")
_CACHED_SETS = 16


class RecordSource(Protocol):
    """A log replay reads records from: either backend (``log_id`` None: the gateway's own log; the
    embedded log holds no other, the PostgreSQL log holds every replica's)."""

    def records(
        self, *, since_seq: int | None = None, until_seq: int | None = None, log_id: str | None = None
    ) -> Iterator[AuditRecord]: ...


@dataclass(frozen=True, slots=True)
class Replayed:
    """A replayed answer, and what the replay's own audit record says about it."""

    answer: CheckAnswer
    detail: dict[str, Any]


class Replays:
    """Replays records of this gateway's audit log (``log``; None: the gateway runs without one)."""

    def __init__(
        self,
        engine: CheckEngine,
        log: RecordSource | None,
        log_id: str,
        keyring: KeyRing | None,
        *,
        served: str,
    ) -> None:
        self.engine = engine
        self.log = log
        self.log_id = log_id
        self.keyring = keyring
        self.served = served  # the digest of the policy set this gateway serves (engine.policy)
        self._sets: OrderedDict[str, PolicySet] = OrderedDict()

    async def replay(self, request: pb.CheckRequest) -> Replayed:
        """The answer the record ``request.replay_of`` names was given (the caller is an auditor)."""
        if request.as_of_version != 0 or request.HasField("as_of_time"):
            raise InvalidArgument(
                "replay_of takes the data version and instant from the record: leave as_of_version and "
                "as_of_time unset",
                reason="replay.as_of",
            )
        reference, seq, log = self._reference(request.replay_of)
        # Reading the log waits for the writer to index what it journaled: off the event loop.
        return await asyncio.get_running_loop().run_in_executor(
            None, self._replay, request, reference, seq, log
        )

    def _reference(self, text: str) -> tuple[str, int, str]:
        match = _REFERENCE.fullmatch(text.strip())
        if match is None:
            raise InvalidArgument(
                "replay_of must name an audit record as '<log id>-<seq>' (a receipt's id) or '<seq>'",
                reason="replay.reference",
            )
        log, seq = match.group("log"), int(match.group("seq"))
        # The PostgreSQL log holds every replica's: any record of the deployment can be replayed.
        if log is not None and log != self.log_id and holds_every_replica(self.log):
            return f"{log}-{seq}", seq, log
        if log is not None and log != self.log_id:
            raise FailedPrecondition(
                f"record {log}-{seq} is in the audit log of another gateway replica ({log}); this gateway "
                f"replays records of its own log ({self.log_id}): ask the replica that answered",
                reason="replay.other_log",
            )
        return f"{self.log_id}-{seq}", seq, self.log_id

    def _replay(self, request: pb.CheckRequest, reference: str, seq: int, log_id: str) -> Replayed:
        if self.log is None:
            raise FailedPrecondition(
                "this gateway runs without its audit log: it has no record to replay", reason="replay.no_log"
            )
        # Another replica's log is read only from the shared database (_reference refuses it otherwise).
        records = self.log.records(
            since_seq=seq, until_seq=seq, log_id=None if log_id == self.log_id else log_id
        )
        record = next(iter(records), None)
        if record is None:
            raise NotFound(f"no record {reference} in this gateway's audit log", reason="replay.record")
        if record.kind not in CHECK_KINDS or record.status != "OK" or record.subject_hash is None:
            raise FailedPrecondition(
                f"record {reference} is no answered check (kind {record.kind}, status {record.status}): "
                "only the answer of a check can be replayed",
                reason="replay.not_a_check",
            )
        policy = self._policy(record, reference)
        matter = self._matter(record, request.matter, policy, reference)
        kind = _subject_kind(record, reference)
        subject = self.engine.subject(request.subject, kind, record.at)
        self._same_subject(record, subject.code, reference)
        if record.data_version > (current := self.engine.store.data_version()):
            raise FailedPrecondition(
                f"record {reference} was answered from data version {record.data_version}, beyond this "
                f"store's version {current} (a store restored from an older backup?)",
                reason="replay.data_version",
            )
        answer = self.engine.answer(
            subject, matter, record.department, record.at, as_of_version=record.data_version, policy=policy
        )
        detail = {
            "replay_of": reference,
            "replayed_department": record.department,
            "replayed_policy_set": record.policy_set,
        }
        return Replayed(answer, detail)

    def _policy(self, record: AuditRecord, reference: str) -> PolicySet:
        digest = record.policy_set[:MAX_DIGEST_LENGTH]
        if not digest:
            raise FailedPrecondition(
                f"record {reference} names no policy set (it was written before records named theirs): its "
                "answer cannot be replayed with the policies then in force",
                reason="replay.policy_set_unnamed",
            )
        if digest == self.served:
            return self.engine.policy
        cached = self._sets.get(digest)
        if cached is not None:
            self._sets.move_to_end(digest)
            return cached
        stored = self.engine.store.policy_set(digest)
        if stored is None:
            raise FailedPrecondition(
                f"record {reference} was answered under policy set {digest}, which the store does not hold: "
                "it cannot be replayed as it was (start a gateway once with that policy folder to keep it)",
                reason="replay.policy_set_missing",
            )
        try:
            policy = from_stored(digest, stored.body).policy
        except PolicySetError as error:
            raise FailedPrecondition(
                f"record {reference}: {error}", reason="replay.policy_set_invalid"
            ) from None
        self._sets[digest] = policy
        while len(self._sets) > _CACHED_SETS:
            self._sets.popitem(last=False)
        return policy

    @staticmethod
    def _matter(record: AuditRecord, requested: str, policy: PolicySet, reference: str) -> Matter:
        # The record keeps the matter as the caller wrote it; the set that answered it resolved it.
        matter = _resolve(policy, record.matter)
        if matter is None:  # a set that served this check holds its matter; only a forged record lacks it
            raise FailedPrecondition(
                f"record {reference}'s matter is not in the policy set it names", reason="replay.not_a_check"
            )
        if requested.strip() and _resolve(policy, requested) is not matter:
            raise InvalidArgument(
                f"record {reference} is a check for matter {matter.code}, not the one requested",
                reason="replay.matter",
            )
        return matter

    def _same_subject(self, record: AuditRecord, code: str, reference: str) -> None:
        try:
            if self.keyring is None or record.hmac_key_id is None:
                raise KeyRingError("no key")
            key = self.keyring.secret(KeyKind.HMAC, record.hmac_key_id)
        except KeyRingError:
            raise FailedPrecondition(
                f"record {reference}'s subject key {record.hmac_key_id} is not in this gateway's key ring: "
                "the subject cannot be compared",
                reason="replay.subject",
            ) from None
        if not hmac.compare_digest(subject_hash(key, code, self.keyring.suite), record.subject_hash or ""):
            raise InvalidArgument(
                f"the subject is not the one record {reference} names", reason="replay.subject"
            )


def _resolve(policy: PolicySet, code: str) -> Matter | None:
    code = code.strip()
    return policy.matters.get(code) or policy.matters.get(code.upper())


def _subject_kind(record: AuditRecord, reference: str) -> SubjectKind | None:
    try:
        return SubjectKind(record.subject_kind) if record.subject_kind else None
    except ValueError:  # a check's record names a kind the gateway knows; only a forged one does not
        raise FailedPrecondition(
            f"record {reference} names no known subject kind", reason="replay.not_a_check"
        ) from None
