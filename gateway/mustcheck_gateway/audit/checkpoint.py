"""Signed checkpoints: (last seq covered, that record's hash, time, signing key id) under the key ring's
suite (Ed25519, or SM2 with SM3: the key id's public key says which).

A ``chain`` checkpoint is written at least every N records or T seconds; a ``prune`` checkpoint is
written by a prune for the last record it deletes, and is what makes the prune anchor trustworthy.
The signature covers a canonical byte string of every field but the signature itself, so a
checkpoint verifies with nothing but the public key of its key id.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mustcheck.suites import PublicKey, public_key_of
from mustcheck.tree_head import Signer

from ..store.codec import format_instant, parse_instant

_SIGNING_DOMAIN = "mustcheck.audit.checkpoint.v1"
CHECKPOINT_COLUMNS: tuple[str, ...] = ("kind", "seq", "record_hash", "at", "key_id", "signature")


class CheckpointKind(StrEnum):
    CHAIN = "chain"
    PRUNE = "prune"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    kind: CheckpointKind
    seq: int
    record_hash: str
    at: dt.datetime
    key_id: str
    signature: str  # base64

    @property
    def identity(self) -> tuple[str, int]:
        return (self.kind.value, self.seq)

    def describe(self) -> str:
        return f"checkpoint at seq {self.seq}" + (" (prune)" if self.kind is CheckpointKind.PRUNE else "")

    def to_row(self) -> tuple[Any, ...]:
        return (
            self.kind.value,
            self.seq,
            self.record_hash,
            format_instant(self.at),
            self.key_id,
            self.signature,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Checkpoint:
        kind, seq, record_hash, at, key_id, signature = row
        return cls(
            CheckpointKind(kind), int(seq), str(record_hash), parse_instant(at), str(key_id), str(signature)
        )

    def to_json(self) -> str:
        return json.dumps(dict(zip(CHECKPOINT_COLUMNS, self.to_row(), strict=True)), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Checkpoint:
        data: Mapping[str, Any] = json.loads(line)
        return cls.from_row(tuple(data[name] for name in CHECKPOINT_COLUMNS))


def signed_bytes(kind: CheckpointKind, seq: int, record_hash: str, at: dt.datetime, key_id: str) -> bytes:
    return f"{_SIGNING_DOMAIN}\n{kind.value}\n{seq}\n{record_hash}\n{format_instant(at)}\n{key_id}".encode()


def sign_checkpoint(
    kind: CheckpointKind,
    seq: int,
    record_hash: str,
    *,
    key_id: str,
    signer: Signer,
    at: dt.datetime,
) -> Checkpoint:
    signature = signer.sign(signed_bytes(kind, seq, record_hash, at, key_id))
    return Checkpoint(kind, seq, record_hash, at, key_id, base64.b64encode(signature).decode())


def signature_problem(checkpoint: Checkpoint, public_keys: Mapping[str, PublicKey]) -> str | None:
    """None if the signature verifies under its key id's public key, else why not."""
    public_key = public_key_of(public_keys.get(checkpoint.key_id))
    if public_key is None:
        unknown = checkpoint.key_id
        return f"{checkpoint.describe()}: signed with key {unknown}, which is not among the public keys"
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except (binascii.Error, ValueError):
        return f"{checkpoint.describe()}: signature invalid"
    signed = signed_bytes(
        checkpoint.kind, checkpoint.seq, checkpoint.record_hash, checkpoint.at, checkpoint.key_id
    )
    if not public_key.verify(signature, signed):
        return f"{checkpoint.describe()}: signature invalid"
    return None
