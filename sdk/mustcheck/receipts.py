"""Receipts (R11): the gateway's proof that a check happened and is in its signed audit log, offline.

Every allowed check answer carries a receipt that the approval system keeps with its decision. Its
compact form is ``mcr2.<payload>.<proof>.<signature>`` (each unpadded base64url): the payload is
canonical JSON of the answer (caller, matter, the subject as a keyed hash, never in clear, outcome,
measure ids, data version, time, the audit record's sequence number) and the signed tree head
(:mod:`.tree_head`) of the log after the record's commit; the proof is the record's hash in the audit
chain followed by its inclusion proof in that tree (hashes concatenated, nearest first); the signature
is the tree head's. All receipts of one commit (a whole batch) share the head and its one signature.
:func:`verify_receipt` checks the head's signature and that the answer's leaf is in the tree the head
signs: the gateway gave this answer, and its audit record is in the log (docs/receipts.md).

Receipts of the first format, ``mcr1.<payload>.<signature>`` (one Ed25519 signature per answer), still
verify. A receipt has one string: :func:`verify_receipt` and :func:`parse_receipt` refuse any other
spelling of it. :func:`verify_receipt` needs only the gateway's public keys (current and past: a receipt
signed before a key rotation still verifies).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import MustCheckError
from .merkle import verify_inclusion
from .suites import public_key_of
from .tree_head import ANSWER_FIELDS, Signer, TreeHead, canonical_json, leaf_data

__all__ = [
    "InvalidReceipt",
    "Receipt",
    "encode_receipt",
    "load_public_keys",
    "parse_receipt",
    "sign_receipt",
    "verify_receipt",
]

PREFIX = "mcr1"
PROOF_PREFIX = "mcr2"
DOMAIN = b"mustcheck.receipt.v1\n"
_FIELDS = (
    "id",
    "caller",
    "matter",
    "subject",
    "subject_key",
    "outcome",
    "measures",
    "data_version",
    "issued_at",
    "audit_seq",
    "kid",
)


class InvalidReceipt(MustCheckError):
    """The receipt is malformed, altered, or signed by a key the verifier does not know."""


@dataclass(frozen=True, slots=True)
class Receipt:
    receipt_id: str
    caller: str
    matter: str
    subject_hash: str
    subject_key_id: str
    outcome: str
    measure_ids: tuple[str, ...]
    data_version: int
    issued_at: dt.datetime
    audit_seq: int
    key_id: str
    compact: str
    # Receipts that are proofs (mcr2): the log, the record's hash, and the signed head it is proven in.
    log_id: str = ""
    record_hash: str = ""
    tree_head: TreeHead | None = None

    @property
    def leaf_index(self) -> int | None:
        """The record's leaf in the log's Merkle tree (None for a receipt of the first format)."""
        return None if self.tree_head is None else self.audit_seq - 1

    def __str__(self) -> str:
        return self.compact


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _unb64(text: str) -> bytes:
    """Strict base64url without padding: the one spelling :func:`_b64` gives, or ``ValueError``.

    A lenient decoder would take ``+``/``/`` for ``-``/``_``, padding, stray characters and unused low
    bits in the last character, so that one receipt had many strings.
    """
    if not _B64URL_ALPHABET.issuperset(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("unused bits set in the last character")
    return data


def _canonical_json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_receipt(fields: Mapping[str, Any], key_id: str, signer: Signer) -> str:
    """The compact receipt for ``fields`` (the gateway's side)."""
    payload = _canonical_json({**fields, "kid": key_id})
    signature = signer.sign(DOMAIN + payload)
    return f"{PREFIX}.{_b64(payload)}.{_b64(signature)}"


def _split(compact: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """The payload, signature and fields of a receipt in its one canonical spelling; anything else is
    refused, so that a receipt has exactly one string (stores, comparisons and indexes can rely on it)."""
    parts = compact.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidReceipt(f"not a receipt: expected {PREFIX}.<payload>.<signature>")
    try:
        payload, signature = _unb64(parts[1]), _unb64(parts[2])
    except ValueError:
        raise InvalidReceipt(
            "the receipt is not in its canonical form: payload and signature must be unpadded base64url"
        ) from None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidReceipt("the receipt's payload is not readable") from None
    if not isinstance(data, dict) or _canonical_json(data) != payload:
        raise InvalidReceipt("the receipt is not in its canonical form: its payload is not canonical JSON")
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        raise InvalidReceipt(f"the receipt lacks {', '.join(missing)}")
    return payload, signature, data


def parse_receipt(compact: str) -> Receipt:
    """Read a receipt without verifying it (use :func:`verify_receipt` to trust it)."""
    if compact.startswith(PROOF_PREFIX + "."):
        return _proof_split(compact)[0]
    return _receipt(_split(compact)[2], compact)


def encode_receipt(answer: Mapping[str, Any], record_hash: str, proof: list[bytes], head: TreeHead) -> str:
    """The compact proof receipt (the gateway's side): ``answer`` holds :data:`ANSWER_FIELDS`.

    The payload is ``canonical_json({"answer": answer, "head": head.body()})``, written as its two
    parts: all receipts of one commit (a whole batch) share the head, encoded once for them.
    """
    return encode_receipt_json(canonical_json(dict(answer)), record_hash, proof, head)


def encode_receipt_json(answer_json: bytes, record_hash: str, proof: list[bytes], head: TreeHead) -> str:
    """:func:`encode_receipt` of an answer already encoded (``canonical_json(answer)``, as its leaf was)."""
    head_json, signature = _head_parts(head)
    payload = b'{"answer":' + answer_json + b',"head":' + head_json + b"}"
    proven = bytes.fromhex(record_hash) + b"".join(proof)
    return f"{PROOF_PREFIX}.{_b64(payload)}.{_b64(proven)}.{signature}"


# The last head a receipt was encoded for: its body as canonical JSON and its signature, base64url.
_last_head: tuple[TreeHead, bytes, str] | None = None


def _head_parts(head: TreeHead) -> tuple[bytes, str]:
    global _last_head
    last = _last_head
    if last is None or last[0] is not head:
        last = _last_head = (head, canonical_json(head.body()), _b64(head.signature))
    return last[1], last[2]


_NOT_CANONICAL = "the receipt is not in its canonical form"


def _proof_split(compact: str) -> tuple[Receipt, bytes, dict[str, Any]]:
    """The receipt and its proof bytes, from its one canonical spelling; anything else is refused."""
    parts = compact.split(".")
    if len(parts) != 4 or parts[0] != PROOF_PREFIX:
        raise InvalidReceipt(f"not a receipt: expected {PROOF_PREFIX}.<payload>.<proof>.<signature>")
    try:
        payload, proof, signature = (_unb64(part) for part in parts[1:])
    except ValueError:
        raise InvalidReceipt(f"{_NOT_CANONICAL}: its parts must be unpadded base64url") from None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidReceipt("the receipt's payload is not readable") from None
    if not isinstance(data, dict) or canonical_json(data) != payload:
        raise InvalidReceipt(f"{_NOT_CANONICAL}: its payload is not canonical JSON")
    if sorted(data) != ["answer", "head"]:
        raise InvalidReceipt("the receipt's payload must hold exactly answer and head")
    answer = data["answer"]
    if not isinstance(answer, dict) or sorted(answer) != sorted(ANSWER_FIELDS):
        raise InvalidReceipt(f"the receipt's answer must hold exactly {', '.join(ANSWER_FIELDS)}")
    if not isinstance(data["head"], dict) or len(proof) < 32:
        raise InvalidReceipt("the receipt's fields are not readable")
    record_hash, proof = proof[:32].hex(), proof[32:]
    try:
        head = TreeHead.from_body(data["head"], signature)
    except ValueError as error:
        raise InvalidReceipt(f"the receipt's tree head is not readable: {error}") from None
    try:
        receipt = Receipt(
            receipt_id=f"{head.log_id}-{int(answer['seq'])}",
            caller=str(answer["caller"]),
            matter=str(answer["matter"]),
            subject_hash=str(answer["subject"]),
            subject_key_id=str(answer["key"]),
            outcome=str(answer["outcome"]),
            measure_ids=tuple(str(m) for m in answer["measures"]),
            data_version=int(answer["version"]),
            issued_at=dt.datetime.fromisoformat(answer["at"]),
            audit_seq=int(answer["seq"]),
            key_id=head.key_id,
            compact=compact,
            log_id=head.log_id,
            record_hash=record_hash,
            tree_head=head,
        )
    except (TypeError, ValueError):
        raise InvalidReceipt("the receipt's fields are not readable") from None
    return receipt, proof, answer


# Heads already verified (a batch's receipts share one): (signed bytes, signature, public key) -> True.
_verified_heads: dict[tuple[bytes, bytes, bytes], bool] = {}


def _verify_proof_receipt(compact: str, public_keys: Mapping[str, Any]) -> Receipt:
    receipt, proof, answer = _proof_split(compact)
    head = receipt.tree_head
    assert head is not None
    found = public_keys.get(head.key_id)
    if found is None:
        raise InvalidReceipt(
            f"signed with key {head.key_id}, which is not among the {len(public_keys)} known keys"
        )
    key = public_key_of(found)
    if key is None:
        raise InvalidReceipt(f"key {head.key_id} is not a PEM public key")
    material = key.algorithm.encode() + key.raw
    signed = head.signed_bytes()
    cache_key = (signed, head.signature, material)
    if cache_key not in _verified_heads:
        problem = head.signature_problem(public_keys, signed)
        if problem is not None:
            raise InvalidReceipt(
                f"the signature does not match: the receipt was altered or signed by another key ({problem})"
            )
        if len(_verified_heads) >= 4096:
            _verified_heads.clear()
        _verified_heads[cache_key] = True
    hasher = head.hasher
    size = hasher.digest_size
    if len(proof) % size:
        raise InvalidReceipt("the receipt's inclusion proof is not a whole number of hashes")
    path = [proof[i : i + size] for i in range(0, len(proof), size)]
    leaf = hasher.leaf(leaf_data(answer, receipt.record_hash))
    if receipt.audit_seq < 1 or not verify_inclusion(
        hasher, receipt.audit_seq - 1, head.size, leaf, path, head.root
    ):
        raise InvalidReceipt(
            f"the inclusion proof does not lead to the signed root: record {receipt.audit_seq} is not "
            f"proven in the log's tree of {head.size} records (the receipt was altered)"
        )
    return receipt


def _receipt(data: dict[str, Any], compact: str) -> Receipt:
    try:
        return Receipt(
            receipt_id=str(data["id"]),
            caller=str(data["caller"]),
            matter=str(data["matter"]),
            subject_hash=str(data["subject"]),
            subject_key_id=str(data["subject_key"]),
            outcome=str(data["outcome"]),
            measure_ids=tuple(str(m) for m in data["measures"]),
            data_version=int(data["data_version"]),
            issued_at=dt.datetime.fromisoformat(data["issued_at"]),
            audit_seq=int(data["audit_seq"]),
            key_id=str(data["kid"]),
            compact=compact,
        )
    except (TypeError, ValueError):
        raise InvalidReceipt("the receipt's fields are not readable") from None


def verify_receipt(compact: str, public_keys: Mapping[str, Any]) -> Receipt:
    """The receipt, if it is genuine, else :class:`InvalidReceipt` saying why.

    A proof receipt (``mcr2``) is genuine if its tree head is signed by the named key and its inclusion
    proof leads from the answer's leaf to the head's root; one of the first format (``mcr1``) if its own
    signature is valid under the named key. ``public_keys`` maps key ids to PEM public keys (or key
    objects) of either suite (:mod:`.suites`); a receipt of the SM suite needs the extra ``mustcheck[sm]``,
    and without it raises :class:`~.suites.SuiteUnavailable` naming the extra.
    """
    if compact.startswith(PROOF_PREFIX + "."):
        return _verify_proof_receipt(compact, public_keys)
    payload, signature, data = _split(compact)
    key_id = str(data["kid"])
    key = public_keys.get(key_id)
    if key is None:
        raise InvalidReceipt(
            f"signed with key {key_id}, which is not among the {len(public_keys)} known keys"
        )
    loaded = public_key_of(key)
    if loaded is None:
        pem = key.encode() if isinstance(key, str) else key
        if isinstance(pem, bytes) and b"-----BEGIN PUBLIC KEY-----" in pem:
            raise InvalidReceipt(f"key {key_id} is not an Ed25519 public key (nor an SM2 one)")
        raise InvalidReceipt(f"key {key_id} is not a PEM public key")
    if not loaded.verify(signature, DOMAIN + payload):
        raise InvalidReceipt("the signature does not match: the receipt was altered or signed by another key")
    return _receipt(data, compact)


def load_public_keys(path: str | Path) -> dict[str, bytes]:
    """Public keys by key id: a JSON file ``{key_id: PEM}`` or a directory of ``<key_id>.pem`` files."""
    location = Path(path)
    if location.is_dir():
        pems = {pem.stem: pem.read_bytes() for pem in sorted(location.glob("*.pem"))}
        public = {key_id: pem for key_id, pem in pems.items() if b"PRIVATE KEY" not in pem}
        if pems and not public:
            # A gateway's keys/ folder: its signing keys are private; the public ones are in keys/public/.
            raise ValueError(
                f"{location} holds private keys only: give the folder of public keys "
                f"(a gateway's keys/public/) or the file `mustcheck receipts keys` writes"
            )
        return public
    data = json.loads(location.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{location} does not hold a JSON object of key id to PEM")
    return {str(key_id): str(pem).encode() for key_id, pem in data.items()}
