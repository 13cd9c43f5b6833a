"""The committed receipt and tree-head vectors (tests/vectors/, docs/receipts.md) verify with the SDK: the
valid receipts pass with the answers they state, each altered or non-canonical one fails for the reason
its ``fails`` names, and the tree heads are signed and consistent. Other languages' clients verify the
same files (examples/node)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mustcheck import InvalidReceipt, verify_receipt
from mustcheck.merkle import SHA256, verify_consistency
from mustcheck.tree_head import TreeHead, leaf_data

VECTORS = Path(__file__).resolve().parent / "vectors"
# docs/receipts.md "Failure kinds": what the SDK's InvalidReceipt says for each.
SDK_WORDS = {
    "malformed": ("not a receipt", "not readable", "must hold exactly"),
    "not_canonical": ("not in its canonical form",),
    "unknown_key": ("which is not among the",),
    "bad_signature": ("the signature does not match",),
    "bad_proof": ("inclusion proof",),
}


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


KEYS = _load("keys.json")
RECEIPTS = _load("receipts.json")
HEADS = _load("tree_heads.json")
PEMS = {key_id: pem.encode() for key_id, pem in KEYS["public_keys_pem"].items()}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_vectors_cover_every_documented_case() -> None:
    kinds = {vector["fails"] for vector in RECEIPTS["invalid"]}
    assert kinds == set(SDK_WORDS)
    names = {vector["name"] for vector in RECEIPTS["invalid"]}
    assert {"answer_bit_flipped", "signature_altered", "unknown_key_id", "padded_signature"} <= names
    assert {"standard_alphabet", "whitespace_inside", "proof_truncated_by_one_hash"} <= names
    assert len(RECEIPTS["valid"]) >= 3
    assert any(vector["expect"]["proof_hashes"] > 0 for vector in RECEIPTS["valid"])


@pytest.mark.parametrize("vector", RECEIPTS["valid"], ids=lambda v: v["name"])
def test_valid_receipts_verify_with_what_they_state(vector: dict[str, Any]) -> None:
    receipt = verify_receipt(vector["receipt"], PEMS)
    expect = vector["expect"]
    assert receipt.tree_head is not None
    assert (receipt.audit_seq, receipt.caller, receipt.matter, receipt.outcome) == (
        expect["seq"],
        expect["caller"],
        expect["matter"],
        expect["outcome"],
    )
    assert (receipt.log_id, receipt.tree_head.size, receipt.key_id, receipt.record_hash) == (
        expect["log"],
        expect["size"],
        expect["kid"],
        expect["record_hash"],
    )
    # The raw keys verify as well as the PEM ones.
    raw = {
        key_id: Ed25519PublicKey.from_public_bytes(_unb64(key))
        for key_id, key in KEYS["public_keys_raw"].items()
    }
    assert verify_receipt(vector["receipt"], raw).audit_seq == expect["seq"]


@pytest.mark.parametrize("vector", RECEIPTS["invalid"], ids=lambda v: v["name"])
def test_altered_and_non_canonical_receipts_fail_for_their_reason(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidReceipt) as refused:
        verify_receipt(vector["receipt"], PEMS)
    message = refused.value.message
    assert any(words in message for words in SDK_WORDS[vector["fails"]]), (vector["fails"], message)


def test_tree_heads_are_signed_and_consistent() -> None:
    old, new = (TreeHead.from_json(json.dumps(HEADS[which])) for which in ("old", "new"))
    assert old.signature_problem(PEMS) is None and new.signature_problem(PEMS) is None
    assert old.signed_bytes() == _unb64(HEADS["old_signed_bytes_b64url"])
    assert old.signed_bytes().startswith(b"mustcheck.tree_head.v1\n")
    proof = [_unb64(node) for node in HEADS["consistency_proof"]]
    assert 0 < old.size < new.size and old.log_id == new.log_id
    assert verify_consistency(SHA256, old.size, new.size, old.root, new.root, proof)
    # Any change to the proof, or a proof between other sizes, fails.
    for index in range(len(proof)):
        altered = list(proof)
        altered[index] = bytes([altered[index][0] ^ 1]) + altered[index][1:]
        assert not verify_consistency(SHA256, old.size, new.size, old.root, new.root, altered)
    assert not verify_consistency(SHA256, old.size, new.size, old.root, new.root, proof[:-1])
    assert not verify_consistency(SHA256, old.size - 1, new.size, old.root, new.root, proof)
    # A head whose bytes changed no longer verifies.
    forged = TreeHead(old.log_id, old.size + 1, old.root, old.at, old.key_id, old.algorithms, old.signature)
    assert forged.signature_problem(PEMS) is not None


def test_the_worked_leaf_is_the_documented_hash() -> None:
    leaf = HEADS["leaf"]
    data = leaf_data(leaf["answer"], leaf["record"])
    assert data == _unb64(leaf["leaf_data_b64url"])
    assert data.startswith(b"mustcheck.leaf.v1\n{")
    assert hashlib.sha256(b"\x00" + data).hexdigest() == leaf["leaf_hash_hex"] == SHA256.leaf(data).hex()
