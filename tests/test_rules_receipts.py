"""Rule tests of receipts (R11), with oracles written here.

A proof receipt (``mcr2``) is built here by hand from docs/receipts.md — the payload's canonical JSON, the
record's hash followed by an RFC 9162 audit path computed by this file's own recursive oracle, the tree
head's signature — and must verify; every altered, truncated, extended or re-spelt one must not. A receipt
of the first format (``mcr1``) is checked with ``cryptography`` directly. The gateway's signer is driven
with a key ring in a temporary folder. No gateway runs, so that each mutant of the receipt modules is
judged within a second of pytest starting (``scripts/mutation``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rfc9162 import oracle_leaf, oracle_mth, oracle_path

from mustcheck.receipts import (
    InvalidReceipt,
    encode_receipt,
    load_public_keys,
    parse_receipt,
    sign_receipt,
    verify_receipt,
)
from mustcheck.tree_head import TreeHead, sign_tree_head
from mustcheck_gateway.audit import AuditEvent, KeyKind, KeyRing
from mustcheck_gateway.audit.protect import SubjectProtector
from mustcheck_gateway.audit.record import PendingRecord
from mustcheck_gateway.receipts import ReceiptSigner


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
KEYS = {"sign-1": SIGNER.public_key()}


def answer(seq: int) -> dict[str, Any]:
    return {
        "at": f"2026-12-04T08:30:{seq:02d}.000000+00:00",
        "caller": "approval",
        "key": "hmac-1",
        "matter": "MOHURD-0001",
        "measures": ["M-1", f"M-{seq}"],
        "outcome": "no_record",
        "seq": seq,
        "subject": f"{seq:064x}",
        "version": 7,
    }


def record_hash(seq: int) -> str:
    return hashlib.sha256(f"record {seq}".encode()).hexdigest()


def leaf_of(seq: int, answer_: dict[str, Any] | None = None, hashed: str | None = None) -> bytes:
    """docs/receipts.md: the leaf hashes the leaf tag and the canonical JSON of answer and record hash."""
    body = {"answer": answer_ or answer(seq), "record": hashed or record_hash(seq)}
    return oracle_leaf(b"mustcheck.leaf.v1\n" + canonical(body))


def log_of(size: int, signer: Ed25519PrivateKey = SIGNER) -> tuple[list[bytes], TreeHead]:
    leaves = [leaf_of(seq) for seq in range(1, size + 1)]
    head = sign_tree_head(
        "log-1", size, oracle_mth(leaves), "2026-12-04T08:31:00.000000+00:00", "sign-1", signer
    )
    return leaves, head


def by_hand(seq: int, leaves: list[bytes], head: TreeHead, **changes: Any) -> str:
    """A proof receipt assembled from the specification, with ``changes`` to its parts."""
    payload = changes.get("payload") or canonical(
        {"answer": changes.get("answer", answer(seq)), "head": changes.get("head_body", head.body())}
    )
    proof = changes.get("proof", oracle_path(seq - 1, leaves))
    proven = bytes.fromhex(changes.get("hashed", record_hash(seq))) + b"".join(proof)
    return f"mcr2.{b64(payload)}.{b64(proven)}.{b64(changes.get('signature', head.signature))}"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_a_proof_receipt_is_the_documented_string_and_verifies(size: int) -> None:
    leaves, head = log_of(size)
    for seq in range(1, size + 1):
        compact = by_hand(seq, leaves, head)
        assert encode_receipt(answer(seq), record_hash(seq), oracle_path(seq - 1, leaves), head) == compact
        receipt = verify_receipt(compact, KEYS)
        assert receipt == parse_receipt(compact)
        assert (receipt.receipt_id, receipt.audit_seq, receipt.leaf_index) == (f"log-1-{seq}", seq, seq - 1)
        assert (receipt.caller, receipt.matter, receipt.outcome) == ("approval", "MOHURD-0001", "no_record")
        assert (receipt.subject_hash, receipt.subject_key_id) == (f"{seq:064x}", "hmac-1")
        assert receipt.measure_ids == ("M-1", f"M-{seq}")
        assert receipt.data_version == 7 and receipt.key_id == "sign-1" and receipt.log_id == "log-1"
        assert receipt.issued_at == dt.datetime(2026, 12, 4, 8, 30, seq, tzinfo=dt.UTC)
        assert receipt.record_hash == record_hash(seq) and receipt.tree_head == head
        assert str(receipt) == compact == receipt.compact


def refused(compact: str, match: str, keys: dict[str, Any] | None = None) -> None:
    with pytest.raises(InvalidReceipt, match=match):
        verify_receipt(compact, KEYS if keys is None else keys)


def test_an_altered_proof_receipt_does_not_lead_to_the_signed_root() -> None:
    leaves, head = log_of(5)
    proof = oracle_path(2, leaves)
    not_proven = "the inclusion proof does not lead to the signed root: record 3 is not proven"
    refused(by_hand(3, leaves, head, answer={**answer(3), "outcome": "restrictions"}), not_proven)
    refused(by_hand(3, leaves, head, answer={**answer(3), "measures": ["M-1"]}), not_proven)
    refused(by_hand(3, leaves, head, hashed=record_hash(4)), not_proven)
    refused(by_hand(3, leaves, head, proof=proof[:-1]), not_proven)
    refused(by_hand(3, leaves, head, proof=[*proof, proof[0]]), not_proven)
    refused(by_hand(3, leaves, head, proof=proof[::-1]), not_proven)
    refused(by_hand(3, leaves, head, proof=[]), not_proven)
    # Another record's answer with this record's proof, and a record moved to another leaf.
    refused(by_hand(3, leaves, head, answer=answer(4), hashed=record_hash(4)), "record 4 is not proven")
    moved = {**answer(3), "seq": 2}
    refused(by_hand(3, leaves, head, answer=moved), "record 2 is not proven")
    refused(by_hand(3, leaves, head, answer={**answer(3), "seq": 0}), "record 0 is not proven")
    refused(by_hand(3, leaves, head, proof=[proof[0][:31], *proof[1:]]), "not a whole number of hashes")


def test_a_proof_receipt_needs_its_head_signed_by_a_known_key() -> None:
    leaves, head = log_of(5)
    refused(
        by_hand(3, leaves, head), r"signed with key sign-1, which is not among the 1 known keys", {"x": 1}
    )
    refused(by_hand(3, leaves, head), "the signature does not match", {"sign-1": OTHER.public_key()})
    _, foreign = log_of(5, OTHER)
    refused(by_hand(3, leaves, head, signature=foreign.signature), "the signature does not match")
    # A head grown or shrunk, or given another root, no longer carries its signature.
    for changed in ({"size": 4}, {"size": 6}, {"root": b64(oracle_mth(leaves[:4]))}, {"log": "log-2"}):
        regrown = by_hand(3, leaves, head, head_body={**head.body(), **changed})
        refused(regrown, "the signature does not match")
    pem = SIGNER.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert verify_receipt(by_hand(3, leaves, head), {"sign-1": pem}).audit_seq == 3


def test_a_head_verified_once_is_not_trusted_under_another_key() -> None:
    leaves, head = log_of(6)
    compact = by_hand(6, leaves, head)
    assert verify_receipt(compact, KEYS).audit_seq == 6
    refused(compact, "the signature does not match", {"sign-1": OTHER.public_key()})
    assert verify_receipt(by_hand(1, leaves, head), KEYS).audit_seq == 1


def test_a_proof_receipt_has_one_spelling() -> None:
    leaves, head = log_of(3)
    body = {"answer": answer(2), "head": head.body()}
    good = by_hand(2, leaves, head)
    parts = good.split(".")
    refusals = [
        (good + ".x", "expected mcr2.<payload>.<proof>.<signature>"),
        (".".join(parts[:3]), "expected mcr2"),
        ("mcr3" + good[4:], "expected mcr1"),
        (".".join([parts[0], parts[1] + "=", *parts[2:]]), "parts must be unpadded base64url"),
        (".".join([parts[0], parts[1], "+" + parts[2][1:], parts[3]]), "parts must be unpadded base64url"),
        (by_hand(2, leaves, head, payload=b"\xff{"), "payload is not readable"),
        (by_hand(2, leaves, head, payload=json.dumps(body).encode()), "payload is not canonical JSON"),
        (by_hand(2, leaves, head, payload=b"[]"), "payload is not canonical JSON"),
        (by_hand(2, leaves, head, payload=canonical({**body, "x": 1})), "exactly answer and head"),
        (by_hand(2, leaves, head, payload=canonical({"answer": answer(2)})), "exactly answer and head"),
        (by_hand(2, leaves, head, answer=[]), "answer must hold exactly at, caller, key, matter"),
        (by_hand(2, leaves, head, answer={**answer(2), "x": 1}), "answer must hold exactly"),
        (by_hand(2, leaves, head, answer={k: v for k, v in answer(2).items() if k != "key"}), "exactly"),
        (by_hand(2, leaves, head, head_body=[]), "fields are not readable"),
        (by_hand(2, leaves, head, head_body={**head.body(), "size": -3}), "tree head is not readable"),
        (by_hand(2, leaves, head, answer={**answer(2), "at": "yesterday"}), "fields are not readable"),
        (by_hand(2, leaves, head, answer={**answer(2), "seq": "two"}), "fields are not readable"),
        (by_hand(2, leaves, head, answer={**answer(2), "version": None}), "fields are not readable"),
        (by_hand(2, leaves, head, answer={**answer(2), "measures": 3}), "fields are not readable"),
    ]
    for compact, message in refusals:
        refused(compact, message)
        with pytest.raises(InvalidReceipt, match=message):
            parse_receipt(compact)
    short = f"mcr2.{parts[1]}.{b64(bytes.fromhex(record_hash(2))[:31])}.{parts[3]}"
    refused(short, "fields are not readable")
    hash_only = f"mcr2.{b64(canonical({'answer': answer(1), 'head': log_of(1)[1].body()}))}"
    single = f"{hash_only}.{b64(bytes.fromhex(record_hash(1)))}.{b64(log_of(1)[1].signature)}"
    assert verify_receipt(single, KEYS).audit_seq == 1  # a tree of one leaf: the proof is the hash alone


# --- the first format ---------------------------------------------------------------------------------------

FIELDS: dict[str, Any] = {
    "id": "r-1",
    "caller": "approval",
    "matter": "MOHURD-0001",
    "subject": "ab" * 32,
    "subject_key": "hmac-1",
    "outcome": "no_record",
    "measures": ["M-1"],
    "data_version": 7,
    "issued_at": "2026-12-04T08:30:00.000000+00:00",
    "audit_seq": 0,
}


def first_format(fields: dict[str, Any], key_id: str = "sign-1", signer: Ed25519PrivateKey = SIGNER) -> str:
    payload = canonical({**fields, "kid": key_id})
    signature = signer.sign(b"mustcheck.receipt.v1\n" + payload)
    return f"mcr1.{b64(payload)}.{b64(signature)}"


def test_a_first_format_receipt_is_the_documented_string_and_verifies() -> None:
    compact = sign_receipt(FIELDS, "sign-1", SIGNER)
    assert compact == first_format(FIELDS)
    _, payload, signature = compact.split(".")
    SIGNER.public_key().verify(unb64(signature), b"mustcheck.receipt.v1\n" + unb64(payload))
    receipt = verify_receipt(compact, KEYS)
    assert receipt == parse_receipt(compact)
    assert (receipt.receipt_id, receipt.caller, receipt.matter) == ("r-1", "approval", "MOHURD-0001")
    assert (receipt.subject_hash, receipt.subject_key_id, receipt.outcome) == (
        "ab" * 32,
        "hmac-1",
        "no_record",
    )
    assert (receipt.measure_ids, receipt.data_version, receipt.audit_seq) == (("M-1",), 7, 0)
    assert receipt.issued_at == dt.datetime(2026, 12, 4, 8, 30, tzinfo=dt.UTC)
    assert (receipt.key_id, receipt.leaf_index, receipt.tree_head, receipt.log_id) == (
        "sign-1",
        None,
        None,
        "",
    )


def test_an_altered_or_foreign_first_format_receipt_is_refused() -> None:
    good = first_format(FIELDS)
    prefix, _, signature = good.split(".")
    altered = f"{prefix}.{b64(canonical({**FIELDS, 'outcome': 'restrictions', 'kid': 'sign-1'}))}.{signature}"
    refused(altered, "the signature does not match")
    refused(first_format(FIELDS, signer=OTHER), "the signature does not match")
    refused(good, "signed with key sign-1, which is not among the 2 known keys", {"a": 1, "b": 2})
    pem = SIGNER.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert verify_receipt(good, {"sign-1": pem}).receipt_id == "r-1"
    refused(good, "key sign-1 is not a PEM public key", {"sign-1": b"junk"})
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    refused(good, "key sign-1 is not an Ed25519 public key", {"sign-1": ec_pem})


def test_a_first_format_receipt_has_one_spelling() -> None:
    good = first_format(FIELDS)
    prefix, payload, signature = good.split(".")
    for compact, message in [
        (good + ".x", r"expected mcr1.<payload>.<signature>"),
        ("mcr0" + good[4:], r"expected mcr1"),
        ("mcr9" + good[4:], r"expected mcr1"),
        ("MCR1" + good[4:], r"expected mcr1"),
        (f"{prefix}.{payload}=.{signature}", "must be unpadded base64url"),
        (f"{prefix}.{payload}.{signature}=", "must be unpadded base64url"),
        (first_format({}).replace(first_format({}).split(".")[1], b64(b"\xff")), "payload is not readable"),
        (f"{prefix}.{b64(json.dumps({**FIELDS, 'kid': 'sign-1'}).encode())}.{signature}", "not canonical"),
        (f"{prefix}.{b64(b'[1]')}.{signature}", "not canonical JSON"),
        (first_format({k: v for k, v in FIELDS.items() if k not in ("id", "matter")}), "lacks id, matter"),
        (first_format({**FIELDS, "issued_at": "today"}), "fields are not readable"),
        (first_format({**FIELDS, "audit_seq": "one"}), "fields are not readable"),
    ]:
        with pytest.raises(InvalidReceipt, match=message):
            verify_receipt(compact, KEYS)
        with pytest.raises(InvalidReceipt, match=message):
            parse_receipt(compact)


def test_public_keys_are_read_from_a_folder_or_a_file(tmp_path: Path) -> None:
    pem = SIGNER.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    folder = tmp_path / "public"
    folder.mkdir()
    (folder / "sign-1.pem").write_bytes(pem)
    (folder / "note.txt").write_text("not a key")
    assert load_public_keys(folder) == {"sign-1": pem}
    assert load_public_keys(str(folder)) == {"sign-1": pem}
    private = tmp_path / "keys"
    private.mkdir()
    assert load_public_keys(private) == {}
    (private / "sign-1.pem").write_bytes(
        SIGNER.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError, match="holds private keys only"):
        load_public_keys(private)
    (private / "sign-2.pem").write_bytes(pem)
    assert load_public_keys(private) == {"sign-2": pem}
    listed = tmp_path / "keys.json"
    listed.write_text(json.dumps({"sign-1": pem.decode(), "7": "x"}), encoding="utf-8")
    assert load_public_keys(listed) == {"sign-1": pem, "7": b"x"}
    listed.write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        load_public_keys(listed)


# --- the gateway's signer (without an audit log) ----------------------------------------------------------


def test_the_gateway_signs_first_format_receipts_with_its_current_key(tmp_path: Path) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    signer = ReceiptSigner(keyring)
    key_id = keyring.current_id(KeyKind.SIGN)
    public = signer.public_keys_pem()
    assert set(public) == {key_id}
    assert public[key_id].startswith("-----BEGIN PUBLIC KEY-----")
    event = AuditEvent(
        kind="check",
        caller_id="approval",
        matter="MOHURD-0001",
        subject="91350100M000100Y43",
        subject_kind="organization",
        outcome="no_record",
        measure_ids=("M-2", "M-1"),
        data_version=9,
        at=dt.datetime(2026, 12, 4, 8, 30, tzinfo=dt.UTC),
    )
    record = PendingRecord.from_event(event, SubjectProtector(keyring), dt.datetime.now(dt.UTC))
    keys = {kid: pem.encode() for kid, pem in public.items()}
    receipt = verify_receipt(signer.sign(record, 41), keys)
    assert (receipt.audit_seq, receipt.caller, receipt.matter, receipt.outcome) == (
        41,
        "approval",
        "MOHURD-0001",
        "no_record",
    )
    assert receipt.measure_ids == ("M-2", "M-1") and receipt.data_version == 9
    assert receipt.subject_hash == record.subject_hash and receipt.subject_key_id == record.hmac_key_id
    assert receipt.subject_hash not in (None, "", "91350100M000100Y43")
    assert receipt.issued_at == dt.datetime(2026, 12, 4, 8, 30, tzinfo=dt.UTC)
    assert receipt.key_id == key_id and len(receipt.receipt_id) == 32
    assert signer.sign(record, 41) != signer.sign(record, 41)  # each receipt its own id
    unaudited = verify_receipt(signer.sign_unaudited(event), keys)
    assert unaudited.audit_seq == 0 and unaudited.subject_hash == record.subject_hash
    rotated = keyring.rotate(KeyKind.SIGN)
    assert (
        verify_receipt(
            signer.sign(record, 42), {**keys, **{k: v.encode() for k, v in signer.public_keys_pem().items()}}
        ).key_id
        == rotated
    )


def test_a_receipt_s_text_is_utf_8_not_escaped() -> None:
    fields = {**FIELDS, "caller": "住建局审批", "matter": "住建-0001"}
    compact = sign_receipt(fields, "sign-1", SIGNER)
    assert compact == first_format(fields)
    assert "住建局审批".encode() in unb64(compact.split(".")[1])
    assert verify_receipt(first_format(fields), KEYS).caller == "住建局审批"
    leaves, head = log_of(2)
    chinese = {**answer(1), "caller": "住建局审批"}
    leaves[0] = leaf_of(1, chinese)
    head = sign_tree_head(
        "log-1", 2, oracle_mth(leaves), "2026-12-04T08:31:00.000000+00:00", "sign-1", SIGNER
    )
    compact = by_hand(1, leaves, head, answer=chinese)
    assert encode_receipt(chinese, record_hash(1), oracle_path(0, leaves), head) == compact
    assert verify_receipt(compact, KEYS).caller == "住建局审批"


def test_a_signature_with_unused_bits_set_is_refused_however_it_sorts() -> None:
    """The last character of a 64-byte signature carries 4 unused bits: canonical ``w`` (0b110000) with them
    set is one of ``x``–``z``, ``0``–``9``, ``-``, ``_`` — some sort before ``w``, some after."""
    for number in range(200):
        compact = first_format({**FIELDS, "id": f"r-{number}"})
        if compact.endswith("w"):
            break
    else:
        pytest.fail("no signature ends in w")
    for spelt in "xyz0189-_":
        with pytest.raises(InvalidReceipt, match="must be unpadded base64url"):
            verify_receipt(compact[:-1] + spelt, KEYS)


def test_a_receipt_cannot_be_changed_once_read() -> None:
    import dataclasses

    receipt = verify_receipt(first_format(FIELDS), KEYS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        receipt.outcome = "restrictions"  # type: ignore[misc]


def test_a_receipt_with_too_few_parts_or_a_payload_in_another_spelling_is_refused() -> None:
    for compact in ("mcr1", "mcr1.abc", "mcr2.abc.def"):
        with pytest.raises(InvalidReceipt, match="not a receipt"):
            verify_receipt(compact, KEYS)
    # JSON with spaces after its separators (sorts below the canonical text) and with its keys out of order
    # (sorts above it): neither is the one spelling.
    good = first_format(FIELDS)
    _, _, signature = good.split(".")
    for payload in (
        json.dumps({**FIELDS, "kid": "sign-1"}, sort_keys=True).encode(),
        json.dumps({"kid": "sign-1", **FIELDS}).encode(),
    ):
        refused(f"mcr1.{b64(payload)}.{signature}", "not canonical JSON")
    leaves, head = log_of(2)
    for payload in (
        json.dumps({"answer": answer(1), "head": head.body()}, sort_keys=True).encode(),
        json.dumps({"head": head.body(), "answer": answer(1)}).encode(),
    ):
        refused(by_hand(1, leaves, head, payload=payload), "not canonical JSON")
