"""Rule tests of the audit log's hashing and verification (R10), with oracles written here.

- A record's hash: SHA-256 over the domain tag, the previous record's hash, a newline and the canonical
  JSON of every stored column but ``record_hash`` — computed here with hashlib and json, not by the
  module. A record rewritten with its own hash recomputed is found at the next record (its link), and,
  if that one is relinked and recomputed too, at the one after it.
- A leaf: RFC 9162's ``H(0x00 || data)`` over the leaf domain tag and the canonical JSON of the answer and
  the record's chain hash; nodes ``H(0x01 || left || right)``; roots and proofs from the RFC's recursive
  definitions (tests/rfc9162.py, the oracle tests/test_merkle.py and tests/test_rules_receipts.py use too).
- Tree heads: the signed bytes written out, the signature checked with ``cryptography`` directly.

Pure functions and in-memory SQLite only: no gateway, so that each mutant of the audit modules is judged
within a second of pytest starting (``scripts/mutation``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rfc9162 import oracle_leaf, oracle_mth, oracle_node, oracle_path, oracle_subproof

from mustcheck.merkle import (
    SHA256,
    Frontier,
    TreeHasher,
    consistency_proof,
    inclusion_proof,
    root_from_inclusion_proof,
    subtrees_of,
    verify_consistency,
)
from mustcheck.suites import SM3
from mustcheck.tree_head import ALGORITHMS, HASHERS, TreeHead, leaf_data, sign_tree_head, unb64
from mustcheck_gateway.audit import AuditEvent, AuditLog, KeyKind, KeyRing, retention_limit, verify_log
from mustcheck_gateway.audit.chain import ChainWalker
from mustcheck_gateway.audit.checkpoint import CheckpointKind, signed_bytes
from mustcheck_gateway.audit.errors import AuditIntegrityError
from mustcheck_gateway.audit.journal import Journal, read_journal
from mustcheck_gateway.audit.record import (
    GENESIS_HASH,
    RECORD_COLUMNS,
    TAIL_CUT_OUTCOME,
    AuditRecord,
    PendingRecord,
    compute_record_hash,
    stored_columns,
)
from mustcheck_gateway.audit.tree import (
    MerkleTree,
    catch_up,
    consistency_problem,
    insert_heads,
    insert_nodes,
    latest_head,
    pruned_leaf,
    read_heads,
    read_node,
    record_leaf,
    stored_size,
    stored_tree,
)
from mustcheck_gateway.audit.verify import TreeState, VerifyReport

# --- oracles ----------------------------------------------------------------------------------------------


def oracle_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def oracle_record_hash(prev_hash: str, columns: dict[str, Any]) -> str:
    """docs/audit: SHA-256(tag || prev_hash || "\\n" || canonical JSON of the covered columns), hex."""
    covered = {name: value for name, value in columns.items() if name != "record_hash"}
    data = b"mustcheck.audit.record.v1\n" + prev_hash.encode() + b"\n" + oracle_json(covered).encode()
    return hashlib.sha256(data).hexdigest()


def oracle_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# --- records ----------------------------------------------------------------------------------------------

T0 = dt.datetime(2026, 12, 4, 8, 30, 0, 123456, tzinfo=dt.UTC)


def pending(number: int, **changes: Any) -> PendingRecord:
    values: dict[str, Any] = {
        "at": (T0 + dt.timedelta(seconds=number)).isoformat(timespec="microseconds"),
        "kind": "check",
        "caller_id": "approval",
        "department": "住建局",
        "matter": "MOHURD-0001",
        "purpose": f"施工许可 {number}",
        "authorization_ref": f"auth-{number}",
        "subject_kind": "organization",
        "subject_hash": f"{number:064x}",
        "hmac_key_id": "hmac-1",
        "subject_enc": f"enc-{number}",
        "enc_key_id": "enc-1",
        "outcome": "no_record",
        "measure_ids": ("M-1", f"M-{number}"),
        "data_version": 7 + number,
        "status": "OK",
        "latency_us": 300 + number,
        "detail_json": oracle_json({"reason": "", "n": number, "z": [1, "二"]}),
    }
    values.update(changes)
    return PendingRecord(**values)


def chained(count: int) -> list[AuditRecord]:
    records, prev = [], GENESIS_HASH
    for seq in range(1, count + 1):
        record_hash, row = pending(seq).chain(seq, prev)
        records.append(AuditRecord.from_row(row))
        prev = record_hash
    return records


def rehashed(record: AuditRecord, **changes: Any) -> AuditRecord:
    """``record`` with ``changes`` and its own hash recomputed (a forger who knows the scheme)."""
    changed = dataclasses.replace(record, **changes)
    return dataclasses.replace(changed, record_hash=compute_record_hash(changed))


def walk(records: list[AuditRecord], walker: ChainWalker | None = None) -> tuple[ChainWalker, str | None]:
    walker = walker or ChainWalker()
    for record in records:
        problem = walker.step(record)
        if problem is not None:
            return walker, problem
    return walker, None


def test_a_record_s_hash_is_the_documented_sha256_over_its_previous_hash_and_columns() -> None:
    prev = "ab" * 32
    record_hash, row = pending(3).chain(3, prev)
    assert len(row) == len(RECORD_COLUMNS)
    columns = dict(zip(RECORD_COLUMNS, row, strict=True))
    assert columns["seq"] == 3
    assert columns["prev_hash"] == prev
    assert columns["record_hash"] == record_hash
    assert columns["measure_ids"] == '["M-1","M-3"]'
    assert columns["detail"] == '{"n":3,"reason":"","z":[1,"二"]}'
    assert record_hash == oracle_record_hash(prev, columns)
    record = AuditRecord.from_row(row)
    assert compute_record_hash(record) == record_hash
    assert record.to_row() == row
    assert stored_columns(record) == columns


def test_every_stored_column_and_the_previous_hash_are_covered_by_the_hash() -> None:
    record = chained(2)[1]
    original = compute_record_hash(record)
    changes: dict[str, Any] = {
        "seq": 3,
        "at": record.at + dt.timedelta(microseconds=1),
        "kind": "batch_item",
        "caller_id": "approval2",
        "department": "交通局",
        "matter": "MOHURD-0002",
        "purpose": "other",
        "authorization_ref": "auth-x",
        "subject_kind": "person",
        "subject_hash": "f" * 64,
        "hmac_key_id": "hmac-2",
        "subject_enc": "enc-x",
        "enc_key_id": "enc-2",
        "outcome": "restrictions",
        "measure_ids": ("M-1",),
        "data_version": 99,
        "status": "PERMISSION_DENIED",
        "latency_us": 1,
        "detail": {"n": 2, "reason": "x", "z": [1, "二"]},
        "prev_hash": "0" * 63 + "1",
    }
    assert set(changes) == set(RECORD_COLUMNS) - {"record_hash"}
    for name, value in changes.items():
        altered = dataclasses.replace(record, **{name: value})
        assert compute_record_hash(altered) != original, name
        assert compute_record_hash(altered) == oracle_record_hash(altered.prev_hash, stored_columns(altered))
    # The hash covers its own record's previous hash beyond the column: the same columns after another
    # previous hash give another hash (a record moved elsewhere in the chain does not keep its hash).
    assert pending(2).chain(2, "1" * 64)[0] != pending(2).chain(2, "2" * 64)[0]


@pytest.mark.parametrize("tricky", ["", '"', "\\", "\n\x00", "二〇", "\U0001f600", "\u2028"])
def test_an_event_s_detail_is_stored_as_canonical_json_whatever_its_values(tricky: str) -> None:
    # Flat details (strings, integers, null, lists of strings) are written piece by piece; the rest by the
    # general encoder: the stored text is canonical JSON either way (keys sorted, compact, UTF-8 as is).
    details: list[dict[str, Any]] = [
        {},
        {"memoranda": [tricky, "M-1"], "token_id": tricky, "reason": ""},
        {tricky: None, "b": -(2**70), "a": 0},
        {"memoranda": []},
        {"flag": True, "ratio": 1.5, "ids": [1, tricky], "nested": {"z": tricky, "a": [None]}},
    ]
    for detail in details:
        event = AuditEvent(kind="check", caller_id="c", detail=detail)
        assert event.detail_json == oracle_json(detail)
    numbered = AuditEvent(kind="check", caller_id="c", detail=cast(dict[str, Any], {1: tricky}))
    assert numbered.detail_json == oracle_json({"1": tricky})


# Texts with what JSON escapes (quote, backslash, control characters), what it writes as is (CJK, an
# astral character, U+2028) and a lone surrogate, as a caller's free text may carry them.
_TRICKY = ['"', "\\", "\n\t\x00\x1f", "二〇", "\U0001f600", "\u2028", "\ud800", "", "a b"]


@pytest.mark.parametrize("tricky", _TRICKY)
def test_a_record_s_journal_line_and_hash_encoded_in_one_pass_are_as_the_general_encoders_write_them(
    tricky: str,
) -> None:
    # The writer encodes each column once for the hash and the journal line: hash, row and line must be
    # what chain() and the journal's encoder make, for every kind of column value (null subject columns,
    # large and negative integers, a policy set added to the detail, a boolean the general way).
    prev = "cd" * 32
    for changes in (
        {"purpose": f"x{tricky}y", "caller_id": tricky, "detail_json": oracle_json({"note": tricky})},
        {"subject_hash": None, "hmac_key_id": None, "subject_enc": None, "enc_key_id": None},
        {"data_version": 2**70, "latency_us": -5, "policy_set": f"sha256:{tricky}"},
        {"data_version": True, "measure_ids": (tricky, "M-2")},
    ):
        record = pending(4, **changes)
        try:
            expected = record.chain(4, prev)
        except UnicodeEncodeError:  # a lone surrogate is not UTF-8: refused alike
            with pytest.raises(UnicodeEncodeError):
                record.chain_line(4, prev)
            continue
        record_hash, row, line = record.chain_line(4, prev)
        assert (record_hash, row) == expected
        assert line == json.dumps({"r": list(row)}, ensure_ascii=False, separators=(",", ":"))
        assert json.loads(line)["r"] == list(row)


def test_a_stored_record_with_an_unreadable_field_is_refused() -> None:
    row = list(chained(1)[0].to_row())
    row[RECORD_COLUMNS.index("detail")] = "[1, 2]"
    with pytest.raises(ValueError, match="detail is not a JSON object"):
        AuditRecord.from_row(row)
    with pytest.raises(ValueError, match="shorter"):
        AuditRecord.from_row(row[:-1])


# --- walking the chain ------------------------------------------------------------------------------------


def test_an_intact_chain_walks_to_its_end() -> None:
    records = chained(5)
    walker, problem = walk(records)
    assert problem is None
    assert (walker.last_seq, walker.last_hash, walker.checked) == (5, records[-1].record_hash, 5)
    assert records[0].prev_hash == GENESIS_HASH == "0" * 64
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.record_hash


def test_a_rewritten_record_with_its_own_hash_recomputed_breaks_the_next_link() -> None:
    records = chained(5)
    records[2] = rehashed(records[2], outcome="no_record", purpose="rewritten")
    walker, problem = walk(records)
    assert problem == "record 4: previous-hash link broken (deleted or reordered records before it)"
    assert (walker.last_seq, walker.checked) == (3, 3)


def test_a_rewritten_record_relinked_into_the_next_one_breaks_the_link_after_that() -> None:
    records = chained(5)
    records[2] = rehashed(records[2], purpose="rewritten")
    records[3] = rehashed(records[3], prev_hash=records[2].record_hash)
    _, problem = walk(records)
    assert problem == "record 5: previous-hash link broken (deleted or reordered records before it)"
    # Relinking every record after it makes the chain whole again: only a signed head can tell (below).
    records[4] = rehashed(records[4], prev_hash=records[3].record_hash)
    assert walk(records)[1] is None
    assert records[4].record_hash != chained(5)[4].record_hash


def test_a_rewritten_record_without_its_hash_recomputed_is_altered() -> None:
    records = chained(5)
    records[2] = dataclasses.replace(records[2], latency_us=records[2].latency_us + 1)
    _, problem = walk(records)
    assert problem == "record 3: hash does not match its content (altered)"


def test_any_alteration_is_found_whichever_way_its_hash_sorts() -> None:
    """A recomputed hash that sorts before the stored one and one that sorts after: both are found."""
    records = chained(3)
    orders = set()
    for delta in range(1, 17):
        altered = dataclasses.replace(records[1], latency_us=records[1].latency_us + delta)
        orders.add(compute_record_hash(altered) < altered.record_hash)
        assert walk([records[0], altered])[1] == "record 2: hash does not match its content (altered)"
    assert orders == {True, False}


def test_a_detail_that_is_not_plain_json_is_refused_before_it_is_stored() -> None:
    for value in (float("nan"), float("inf"), {1, 2}):
        with pytest.raises(ValueError, match="audit event detail is not JSON-serialisable"):
            AuditEvent(kind="check", caller_id="approval", detail={"x": value})


def test_the_first_record_must_link_to_the_genesis_hash() -> None:
    first = chained(1)[0]
    forged = rehashed(first, prev_hash="1" * 64)
    assert walk([forged])[1] == "record 1: previous-hash link broken (deleted or reordered records before it)"


def test_gaps_and_reordering_are_named() -> None:
    records = chained(6)
    assert walk(records[1:])[1] == "sequence gap: the log starts at 2, expected 1 (record 1 deleted)"
    assert walk(records[3:])[1] == "sequence gap: the log starts at 4, expected 1 (records 1–3 deleted)"
    assert walk([*records[:2], *records[3:]])[1] == "sequence gap: 4 follows 2 (record 3 deleted)"
    assert walk([*records[:2], *records[5:]])[1] == "sequence gap: 6 follows 2 (records 3–5 deleted)"
    swapped = [records[0], records[1], records[3], records[2]]
    assert walk(swapped)[1] == "sequence gap: 4 follows 2 (record 3 deleted)"
    again = [records[0], records[1], records[1]]
    assert walk(again)[1] == "record 2 appears out of order after record 2"
    assert walk([records[0], records[1], records[0]])[1] == "record 1 appears out of order after record 2"


def test_a_walk_can_start_after_a_verified_record() -> None:
    records = chained(5)
    walker = ChainWalker(after_seq=2, after_hash=records[1].record_hash)
    walker, problem = walk(records[2:], walker)
    assert problem is None
    assert (walker.last_seq, walker.checked) == (5, 3)
    wrong = ChainWalker(after_seq=2, after_hash=records[0].record_hash)
    assert walk(records[2:], wrong)[1] == (
        "record 3: previous-hash link broken (deleted or reordered records before it)"
    )
    late = ChainWalker(after_seq=2, after_hash=records[1].record_hash)
    assert walk(records[3:], late)[1] == "sequence gap: the log starts at 4, expected 3 (record 3 deleted)"


# --- leaves and trees -------------------------------------------------------------------------------------

ANSWER = {
    "at": "2026-12-04T08:30:00.123456+00:00",
    "caller": "approval",
    "key": "hmac-1",
    "matter": "MOHURD-0001",
    "measures": ["M-1"],
    "outcome": "no_record",
    "seq": 1,
    "subject": "ab" * 32,
    "version": 7,
}


def test_a_leaf_covers_the_answer_and_the_record_s_chain_hash() -> None:
    data = leaf_data(ANSWER, "cd" * 32)
    assert data == b"mustcheck.leaf.v1\n" + oracle_json({"answer": ANSWER, "record": "cd" * 32}).encode()
    assert SHA256.leaf(data) == oracle_leaf(data)
    assert leaf_data(ANSWER, "ce" * 32) != data
    assert leaf_data({**ANSWER, "outcome": "restrictions"}, "cd" * 32) != data


def test_the_tree_hasher_is_rfc_9162_sha256() -> None:
    assert SHA256.algorithm == "sha256" == ALGORITHMS["hash"]
    assert SHA256.digest_size == 32
    assert SHA256.empty_root() == hashlib.sha256(b"").digest()
    left, right = oracle_leaf(b"a"), oracle_leaf(b"b")
    assert SHA256.leaf(b"a") == left
    assert SHA256.node(left, right) == oracle_node(left, right)
    assert SHA256.node(left, right) != SHA256.node(right, left)
    assert SHA256.leaf(left + right) != SHA256.node(left, right)  # no leaf passes for a node
    assert HASHERS == {"sha256": SHA256, "sm3": SM3}  # the sm suite's tree hash beside it (docs/crypto.md)


@pytest.mark.parametrize("size", [*range(0, 18), 31, 32, 33, 63, 64, 65])
def test_a_frontier_s_root_is_the_rfc_root(size: int) -> None:
    leaves = [oracle_leaf(f"record {i}".encode()) for i in range(size)]
    frontier = Frontier(SHA256)
    for leaf in leaves:
        frontier.append(leaf)
    assert frontier.size == size
    assert len(frontier.nodes) == size.bit_count()
    assert frontier.root() == oracle_mth(leaves)


def test_a_tree_hasher_cannot_be_changed_once_made() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SHA256.algorithm = "sm3"  # type: ignore[misc]
    assert SHA256.algorithm == "sha256"


def test_a_tree_hasher_is_named_by_its_algorithm() -> None:
    other = TreeHasher("double", lambda data: hashlib.sha256(hashlib.sha256(data).digest()).digest())
    assert other.leaf(b"x") == hashlib.sha256(hashlib.sha256(b"\x00x").digest()).digest()
    assert Frontier(other).root() == other.empty_root() != SHA256.empty_root()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 13])
def test_truncated_extended_or_misplaced_inclusion_proofs_lead_nowhere(size: int) -> None:
    leaves = [oracle_leaf(bytes([i])) for i in range(size)]
    root = oracle_mth(leaves)
    for index in range(size):
        path = oracle_path(index, leaves)
        assert root_from_inclusion_proof(SHA256, index, size, leaves[index], path) == root
        assert root_from_inclusion_proof(SHA256, index, size, leaves[index], [*path, root]) is None
        if path:
            assert root_from_inclusion_proof(SHA256, index, size, leaves[index], path[:-1]) is None
    assert root_from_inclusion_proof(SHA256, -1, size, leaves[0], []) is None
    assert root_from_inclusion_proof(SHA256, size, size, leaves[0], []) is None
    for beyond in (size + 1, size + 2, 2 * size + 1):
        for index in range(size):
            assert (
                root_from_inclusion_proof(SHA256, beyond, size, leaves[index], oracle_path(index, leaves))
                is None
            )


@pytest.mark.parametrize("size", [1, 2, 5, 8])
def test_no_proof_is_made_for_a_leaf_or_a_size_outside_the_tree(size: int) -> None:
    leaves = [oracle_leaf(bytes([i])) for i in range(size)]

    def subtree(start: int, end: int) -> bytes:
        return oracle_mth(leaves[start:end])

    assert inclusion_proof(size - 1, size, subtree) == oracle_path(size - 1, leaves)
    for index in (-1, size, size + 1, 2 * size + 1):
        with pytest.raises(ValueError, match=f"leaf {index} is not in a tree of {size} leaves"):
            inclusion_proof(index, size, subtree)
    # Nor a consistency proof from an empty or negative size, or from a larger tree.
    for old_size in (-1, 0, size + 1):
        with pytest.raises(ValueError, match=f"no consistency proof from size {old_size} to size {size}"):
            consistency_proof(old_size, size, subtree)


@pytest.mark.parametrize("new", [2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17])
def test_truncated_extended_or_reversed_consistency_proofs_fail(new: int) -> None:
    leaves = [oracle_leaf(bytes([i])) for i in range(new)]
    new_root = oracle_mth(leaves)
    for old in range(1, new):
        old_root = oracle_mth(leaves[:old])
        proof = oracle_subproof(old, leaves, True)
        assert verify_consistency(SHA256, old, new, old_root, new_root, proof)
        assert not verify_consistency(SHA256, old, new, old_root, new_root, [*proof, new_root])
        assert not verify_consistency(SHA256, old, new, old_root, new_root, proof[:-1])
        assert not verify_consistency(SHA256, old, new, old_root, new_root, proof[1:])
        assert not verify_consistency(SHA256, old, new, new_root, new_root, proof)
        assert not verify_consistency(SHA256, old, new, old_root, old_root, proof)
        assert not verify_consistency(SHA256, new, old, new_root, old_root, proof)
    assert verify_consistency(SHA256, new, new, new_root, new_root, [])
    assert not verify_consistency(SHA256, new, new, new_root, new_root, [new_root])
    assert not verify_consistency(SHA256, new, new, new_root, oracle_mth(leaves[:-1]), [])
    assert verify_consistency(SHA256, 0, new, SHA256.empty_root(), new_root, [])
    assert not verify_consistency(SHA256, 0, new, SHA256.empty_root(), new_root, [new_root])
    assert not verify_consistency(SHA256, -1, new, SHA256.empty_root(), new_root, [])


# --- signed tree heads ------------------------------------------------------------------------------------

SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = SIGNER.public_key()
ROOT = oracle_mth([oracle_leaf(b"a"), oracle_leaf(b"b"), oracle_leaf(b"c")])


def signed_head(**changes: Any) -> TreeHead:
    values: dict[str, Any] = {
        "log_id": "log-1",
        "size": 3,
        "root": ROOT,
        "at": "2026-12-04T08:30:00.000000+00:00",
        "key_id": "sign-1",
        "signer": SIGNER,
    }
    values.update(changes)
    return sign_tree_head(**values)


def test_a_tree_head_signs_the_documented_bytes() -> None:
    head = signed_head()
    body = {
        "alg": {"hash": "sha256", "sig": "ed25519"},
        "at": "2026-12-04T08:30:00.000000+00:00",
        "kid": "sign-1",
        "log": "log-1",
        "root": oracle_b64(ROOT),
        "size": 3,
    }
    assert head.body() == body
    signed = b"mustcheck.tree_head.v1\n" + oracle_json(body).encode()
    assert head.signed_bytes() == signed
    PUBLIC.verify(head.signature, signed)  # raises if the signature is not over exactly these bytes
    assert head.to_json() == oracle_json({**body, "sig": oracle_b64(head.signature)})
    assert TreeHead.from_json(head.to_json()) == head
    assert head.hasher is SHA256
    assert head.signature_problem({"sign-1": PUBLIC}) is None
    pem = PUBLIC.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert head.signature_problem({"sign-1": pem}) is None


def test_a_forged_or_foreign_tree_head_is_named() -> None:
    head = signed_head()
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    assert head.signature_problem({"sign-2": PUBLIC}) == (
        "tree head of size 3: signed with key sign-1, which is not a known key"
    )
    assert head.signature_problem({"sign-1": other.public_key()}) == "tree head of size 3: signature invalid"
    assert head.signature_problem({"sign-1": b"not a pem"}) == "tree head of size 3: signature invalid"
    assert head.signature_problem({"sign-1": 42}) == "tree head of size 3: signature invalid"
    assert head.signature_problem({"sign-1": PUBLIC}, signed=head.signed_bytes() + b"x") == (
        "tree head of size 3: signature invalid"
    )
    for size, root in ((4, ROOT), (3, oracle_leaf(b"x"))):
        moved = dataclasses.replace(head, size=size, root=root)
        assert moved.signature_problem({"sign-1": PUBLIC}) == f"tree head of size {size}: signature invalid"
    for algorithms in ({"hash": "sm3", "sig": "ed25519"}, {"hash": "sha256", "sig": "sm2"}, {}):
        strange = dataclasses.replace(head, algorithms=algorithms)
        assert strange.signature_problem({"sign-1": PUBLIC}) == (
            f"tree head of size 3: unknown algorithms {algorithms}"
        )
    with pytest.raises(ValueError, match="unknown tree hash algorithm 'sha3-256'"):
        _ = dataclasses.replace(head, algorithms={"hash": "sha3-256"}).hasher


def test_a_tree_head_is_read_only_from_its_exact_fields() -> None:
    head = signed_head()
    body = head.body()
    assert TreeHead.from_body(body, head.signature) == head
    refusals: list[tuple[dict[str, Any], str]] = [
        ({k: v for k, v in body.items() if k != "at"}, "exactly the fields"),
        ({**body, "extra": 1}, "exactly the fields"),
        ({**body, "alg": ["sha256"]}, "algorithms are not names"),
        ({**body, "alg": {"hash": 1}}, "algorithms are not names"),
        ({**body, "size": True}, "size is not a count"),
        ({**body, "size": -1}, "size is not a count"),
        ({**body, "size": "3"}, "size is not a count"),
        ({**body, "at": 3}, "fields are not text"),
        ({**body, "kid": None}, "fields are not text"),
        ({**body, "log": 1}, "fields are not text"),
        ({**body, "root": b"x"}, "fields are not text"),
        ({**body, "root": oracle_b64(ROOT) + "="}, "base64url"),
    ]
    for changed, message in refusals:
        with pytest.raises(ValueError, match=message):
            TreeHead.from_body(changed, head.signature)
    assert TreeHead.from_body({**body, "size": 0}, b"").size == 0
    for text in ("[]", json.dumps(body), json.dumps({**body, "sig": 1})):
        with pytest.raises(ValueError, match="not a signed tree head"):
            TreeHead.from_json(text)


def test_base64url_has_one_spelling() -> None:
    assert unb64(oracle_b64(b"\xfb\xff")) == b"\xfb\xff"
    assert unb64("") == b""
    for text in ("-_8", "AA", "AAA", "AAAA"):
        assert oracle_b64(unb64(text)) == text
    for text in ("+_8", "-/8", "-_8=", "A", "AAAAA", "-_9", "AB", "AAB", " AAA"):
        with pytest.raises(ValueError):
            unb64(text)


# --- the log's tree and offline verification ---------------------------------------------------------------
# One real log (25 records, checkpoints at 10, 20 and 25, one tree head of 25 signed on close), made once
# and copied for each test, which tampers with its copy through sqlite3 as an attacker with the file would.

SUBJECT = "91350100M000100Y43"
HEAD_AT = "2026-12-04T09:00:00.000000+00:00"


def log_event(number: int) -> AuditEvent:
    return AuditEvent(
        kind="check",
        caller_id="approval",
        department="住建局",
        matter="MOHURD-0001",
        purpose="施工许可",
        subject=SUBJECT,
        subject_kind="organization",
        outcome="no_record" if number % 3 else "restrictions",
        measure_ids=(f"M-{number}",) if number % 3 == 0 else (),
        data_version=number,
        detail={"n": number},
    )


@pytest.fixture(scope="module")
def made_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("made")
    log = AuditLog.open(directory, checkpoint_every=10, checkpoint_interval_s=3600)
    log.append_many_sync(log_event(number) for number in range(1, 26))
    log.close()
    return directory


@pytest.fixture
def log_dir(made_log: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "log"
    shutil.copytree(made_log, copy)
    return copy


def connect(directory: Path) -> sqlite3.Connection:
    return sqlite3.connect(directory / "audit.sqlite3", isolation_level=None)


def rows_of(directory: Path) -> list[tuple[Any, ...]]:
    with closing(connect(directory)) as connection:
        return connection.execute(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_records ORDER BY seq"
        ).fetchall()


def oracle_leaves(rows: list[tuple[Any, ...]]) -> list[bytes]:
    """docs/receipts.md: a record's leaf is over its answer's fields and its chain hash."""
    leaves = []
    for row in rows:
        column = dict(zip(RECORD_COLUMNS, row, strict=True))
        answer = {
            "at": column["at"],
            "caller": column["caller_id"],
            "key": column["hmac_key_id"] or "",
            "matter": column["matter"],
            "measures": json.loads(column["measure_ids"]),
            "outcome": column["outcome"],
            "seq": column["seq"],
            "subject": column["subject_hash"] or "",
            "version": column["data_version"],
        }
        body = oracle_json({"answer": answer, "record": column["record_hash"]})
        leaves.append(oracle_leaf(b"mustcheck.leaf.v1\n" + body.encode()))
    return leaves


def log_id_of(directory: Path) -> str:
    return (directory / "replica.id").read_text(encoding="ascii").strip()


def head_for(directory: Path, size: int, *, root: bytes | None = None, **changes: Any) -> TreeHead:
    """A tree head of the log's first ``size`` records, signed with the log's own key."""
    keyring = KeyRing.load_or_create(directory / "keys")
    key_id = keyring.current_id(KeyKind.SIGN)
    if root is None:
        root = oracle_mth(oracle_leaves(rows_of(directory))[:size])
    values: dict[str, Any] = {
        "log_id": log_id_of(directory),
        "size": size,
        "root": root,
        "at": HEAD_AT,
        "key_id": key_id,
        "signer": keyring.signer(key_id),
    }
    values.update(changes)
    return sign_tree_head(**values)


def verified(directory: Path, **options: Any) -> VerifyReport:
    return verify_log(directory / "audit.sqlite3", directory / "keys" / "public", **options)


def problem(directory: Path, **options: Any) -> tuple[int | None, str]:
    report = verified(directory, **options)
    assert report.tampered and not report.ok and report.state is None
    return report.problem_seq, report.reason or ""


def forge(directory: Path, first: int, last: int, **changes: Any) -> None:
    """Rewrite records ``first``..``last`` with ``changes``, each with its own hash recomputed (by the
    oracle) and each after the first relinked to the one before it."""
    rows = {row[0]: dict(zip(RECORD_COLUMNS, row, strict=True)) for row in rows_of(directory)}
    prev_hash = rows[first]["prev_hash"]
    with closing(connect(directory)) as connection:
        for seq in range(first, last + 1):
            column = {**rows[seq], **(changes if seq == first else {}), "prev_hash": prev_hash}
            column["record_hash"] = oracle_record_hash(prev_hash, column)
            names = [name for name in RECORD_COLUMNS if name != "seq"]
            connection.execute(
                f"UPDATE audit_records SET {', '.join(f'{name} = ?' for name in names)} WHERE seq = ?",
                (*(column[name] for name in names), seq),
            )
            prev_hash = column["record_hash"]


def forget_checkpoints_after(directory: Path, seq: int) -> None:
    """Remove the checkpoints after ``seq`` from the database and from the mirror file."""
    with closing(connect(directory)) as connection:
        connection.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (seq,))
    mirror = directory / "checkpoints.jsonl"
    kept = [line for line in mirror.read_text().splitlines() if json.loads(line)["seq"] <= seq]
    mirror.write_text("".join(line + "\n" for line in kept))


def test_an_intact_log_verifies_and_its_tree_is_the_rfc_tree(log_dir: Path) -> None:
    rows = rows_of(log_dir)
    leaves = oracle_leaves(rows)
    log_id = log_id_of(log_dir)
    heads = [(head_for(log_dir, size), "a receipt") for size in range(1, 26)]
    report = verified(log_dir, log_id=log_id, heads=heads)
    assert report.ok and not report.tampered and report.reason is None and report.problem_seq is None
    assert (report.records_checked, report.checkpoints_checked, report.mirror_entries_checked) == (25, 3, 3)
    assert (report.first_seq, report.last_seq, report.tree_heads_checked) == (1, 25, 26)
    assert str(report) == "audit log verifies (25 records, 3 checkpoints, 3 mirror entries checked)"
    state = report.state
    assert state is not None
    assert (state.log_id, state.size, state.last_hash) == (log_id, 25, rows[-1][-1])
    assert state.root() == oracle_mth(leaves)
    assert TreeState.from_json(state.to_json()) == state
    assert verified(log_dir).state is None  # no log id given: nothing to resume from
    with closing(connect(log_dir)) as connection:
        nodes = connection.execute("SELECT level, idx, hash FROM audit_tree_nodes").fetchall()
        (stored_head,) = connection.execute("SELECT head FROM audit_tree_heads").fetchall()
    assert TreeHead.from_json(stored_head[0]).root == oracle_mth(leaves)
    assert TreeHead.from_json(stored_head[0]).size == 25
    expected = {(level, index) for level in range(5) for index in range(25 >> level)}
    assert {(level, index) for level, index, _ in nodes} == expected
    for level, index, digest in nodes:
        assert bytes(digest) == oracle_mth(leaves[index << level : (index + 1) << level])


def test_a_forged_record_with_its_own_hash_recomputed_is_found_at_the_next_record(log_dir: Path) -> None:
    forge(log_dir, 17, 17, outcome="restrictions")
    assert problem(log_dir) == (
        18,
        "record 18: previous-hash link broken (deleted or reordered records before it)",
    )


def test_a_forged_record_relinked_to_the_end_is_found_by_the_signed_tree_head(log_dir: Path) -> None:
    forge(log_dir, 21, 25, outcome="cleared")
    forget_checkpoints_after(log_dir, 20)  # the checkpoint of 25 would name it first
    seq, reason = problem(log_dir)
    assert seq == 25
    assert re.fullmatch(
        r"the log's first 25 records do not have the root the tree head of size 25 signed \S+ "
        r"\(the audit database\) signed \(rewritten\)",
        reason,
    ), reason


def test_a_record_s_other_fields_rewritten_and_relinked_are_found_by_the_signed_tree_head(
    log_dir: Path,
) -> None:
    """The purpose is not among a receipt's answer fields: the leaf covers it through the record's hash."""
    forge(log_dir, 21, 25, purpose="改写的用途")
    forget_checkpoints_after(log_dir, 20)
    seq, reason = problem(log_dir)
    assert seq == 25 and reason.startswith("the log's first 25 records do not have the root"), reason


def test_a_forged_record_relinked_is_found_by_a_receipt_s_tree_head(log_dir: Path) -> None:
    receipt_head = head_for(log_dir, 22)
    forge(log_dir, 21, 25, outcome="cleared")
    forget_checkpoints_after(log_dir, 20)
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_tree_heads")
    assert problem(log_dir, heads=[(receipt_head, "a receipt")]) == (
        22,
        f"the log's first 22 records do not have the root the tree head of size 22 signed {HEAD_AT} "
        "(a receipt) signed (rewritten)",
    )
    # Without any head the stored tree nodes still show it: the first leaf rebuilt differently.
    assert problem(log_dir) == (
        21,
        "the stored tree nodes do not match the records: the node at level 0, index 20 was altered "
        "(proofs made from it would be false)",
    )


def test_records_cut_from_the_end_are_found_by_the_tree(log_dir: Path) -> None:
    receipt_head = head_for(log_dir, 23)
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_records WHERE seq > 20")
    forget_checkpoints_after(log_dir, 20)
    seq, reason = problem(log_dir)
    assert seq == 21
    assert re.fullmatch(
        r"the log ends at record 20 but the tree head of size 25 signed \S+ \(the audit database\) covers "
        r"25 records: records 21–25 were cut from the end after that head was signed \(truncated\)",
        reason,
    ), reason
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_tree_heads")
    assert problem(log_dir) == (
        21,
        "the stored tree has 25 leaves but the log ends at record 20: records 21–25 were cut from the end "
        "(truncated)",
    )
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_tree_nodes WHERE (idx + 1) << level > 20")
    assert verified(log_dir).ok  # a clean cut, heads and all: only a head kept elsewhere shows it
    assert problem(log_dir, heads=[(receipt_head, "a receipt")]) == (
        21,
        f"the log ends at record 20 but the tree head of size 23 signed {HEAD_AT} (a receipt) covers 23 "
        "records: records 21–23 were cut from the end after that head was signed (truncated)",
    )
    one = head_for(log_dir, 21, root=oracle_leaf(b"x"))
    assert problem(log_dir, heads=[(one, "a receipt")])[1].endswith(
        "covers 21 records: record 21 were cut from the end after that head was signed (truncated)"
    )


def test_forged_foreign_or_wrong_tree_heads_are_named(log_dir: Path) -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
    forged = head_for(log_dir, 10, signer=other)
    assert problem(log_dir, heads=[(forged, "a receipt")]) == (
        None,
        "a receipt: a forged tree head: tree head of size 10: signature invalid",
    )
    foreign = head_for(log_dir, 10, log_id="another-log")
    log_id = log_id_of(log_dir)
    assert problem(log_dir, log_id=log_id, heads=[(foreign, "the store")]) == (
        None,
        f"the tree head of size 10 signed {HEAD_AT} (the store) is of log another-log, not of this log "
        f"({log_id})",
    )
    assert verified(log_dir, heads=[(foreign, "the store")]).ok  # no log id to hold it to
    wrong = head_for(log_dir, 10, root=oracle_mth(oracle_leaves(rows_of(log_dir))[:9]))
    assert problem(log_dir, heads=[(wrong, "a receipt")]) == (
        10,
        f"the log's first 10 records do not have the root the tree head of size 10 signed {HEAD_AT} "
        "(a receipt) signed (rewritten)",
    )


def test_altered_or_deleted_tree_nodes_are_found(log_dir: Path) -> None:
    with closing(connect(log_dir)) as connection:
        (original,) = connection.execute(
            "SELECT hash FROM audit_tree_nodes WHERE level = 1 AND idx = 3"
        ).fetchone()
        connection.execute("UPDATE audit_tree_nodes SET hash = ? WHERE level = 1 AND idx = 3", (bytes(32),))
    assert problem(log_dir) == (
        7,
        "the stored tree nodes do not match the records: the node at level 1, index 3 was altered "
        "(proofs made from it would be false)",
    )
    with closing(connect(log_dir)) as connection:
        connection.execute("UPDATE audit_tree_nodes SET hash = ? WHERE level = 1 AND idx = 3", (original,))
        connection.execute("DELETE FROM audit_tree_nodes WHERE level = 2 AND idx = 1")
    assert problem(log_dir) == (4, "the stored tree lacks its node at level 2, index 1 (deleted)")
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_tree_nodes WHERE level = 4")
    assert problem(log_dir) == (
        None,
        "the stored tree is incomplete: the tree node at level 4, index 0 is not stored (deleted)",
    )


def test_the_last_leaf_s_node_is_compared_too(log_dir: Path) -> None:
    with closing(connect(log_dir)) as connection:
        connection.execute("UPDATE audit_tree_nodes SET hash = ? WHERE level = 0 AND idx = 24", (bytes(32),))
    assert problem(log_dir) == (
        25,
        "the stored tree nodes do not match the records: the node at level 0, index 24 was altered "
        "(proofs made from it would be false)",
    )


def test_an_incremental_verification_walks_only_what_follows(log_dir: Path) -> None:
    log_id = log_id_of(log_dir)
    state = verified(log_dir, log_id=log_id).state
    assert state is not None
    log = AuditLog.open(log_dir, checkpoint_every=10, checkpoint_interval_s=3600)
    log.append_many_sync(log_event(number) for number in range(26, 31))
    log.close()
    leaves = oracle_leaves(rows_of(log_dir))
    old = head_for(log_dir, 12)
    report = verified(log_dir, log_id=log_id, state=state, heads=[(old, "a receipt")])
    assert report.ok, report.reason
    assert (report.records_checked, report.first_seq, report.last_seq) == (5, 26, 30)
    assert report.state is not None and report.state.size == 30
    assert report.state.root() == oracle_mth(leaves)
    wrong_old = head_for(log_dir, 12, root=oracle_mth(leaves[:11]))
    assert problem(log_dir, log_id=log_id, state=state, heads=[(wrong_old, "a receipt")]) == (
        12,
        f"the tree head of size 12 signed {HEAD_AT} (a receipt) is not consistent with the last verified "
        "head (rewritten)",
    )
    changed = dataclasses.replace(state, last_hash="f" * 64)
    assert problem(log_dir, log_id=log_id, state=changed) == (
        25,
        "record 25, the last one verified before, is missing or changed (truncated or rewritten since)",
    )
    # Whichever way the changed hash sorts against the record's ("f…" above it, "0…" below it).
    assert problem(log_dir, log_id=log_id, state=dataclasses.replace(state, last_hash="0" * 64))[0] == 25
    forge(log_dir, 27, 27, outcome="cleared")
    assert problem(log_dir, log_id=log_id, state=state)[0] == 28


def test_a_verification_state_is_read_strictly() -> None:
    state = TreeState("log-1", 3, "a" * 64, (oracle_leaf(b"1"), oracle_leaf(b"2")))
    assert json.loads(state.to_json()) == {
        "log": "log-1",
        "size": 3,
        "last_hash": "a" * 64,
        "frontier": [oracle_b64(oracle_leaf(b"1")), oracle_b64(oracle_leaf(b"2"))],
    }
    assert TreeState.from_json(state.to_json()) == state
    assert state.root() == oracle_node(oracle_leaf(b"1"), oracle_leaf(b"2"))
    data = json.loads(state.to_json())
    for broken, message in [
        ({**data, "size": 4}, "its frontier does not fit its size"),
        ({**data, "size": 1}, "its frontier does not fit its size"),
        ({k: v for k, v in data.items() if k != "log"}, "not a verification state"),
        ({**data, "size": "x"}, "not a verification state"),
        ({**data, "frontier": ["+"]}, "not a verification state"),
        # -3 has as many one bits as 3: a negative size would pass for one whose frontier fits.
        ({**data, "size": -3}, "not a verification state: its size is negative"),
    ]:
        with pytest.raises(ValueError, match=message):
            TreeState.from_json(json.dumps(broken))
    # The frontier's length is compared with the size's one bits by value, past CPython's shared small ints
    # (up to 256): a size of 257 one bits has a frontier of 257 nodes.
    big = TreeState(
        "log-1", (1 << 257) - 1, "a" * 64, tuple(oracle_leaf(i.to_bytes(2, "big")) for i in range(257))
    )
    assert TreeState.from_json(big.to_json()) == big
    empty = TreeState("log-1", 0, GENESIS_HASH, ())  # a log without records, verified
    assert TreeState.from_json(empty.to_json()) == empty
    with pytest.raises(ValueError, match="its frontier does not fit its size"):
        TreeState.from_json(json.dumps({**json.loads(big.to_json()), "size": 1 << 257}))


def test_a_tampered_report_says_so(log_dir: Path) -> None:
    with closing(connect(log_dir)) as connection:
        connection.execute("UPDATE audit_records SET latency_us = 1 WHERE seq = 4")
    report = verified(log_dir)
    assert str(report) == (
        "audit log TAMPERED: record 4: hash does not match its content (altered) "
        "(3 records, 3 checkpoints, 3 mirror entries checked)"
    )
    assert (report.first_seq, report.last_seq) == (1, 3)
    missing = verify_log(log_dir / "missing.sqlite3", log_dir / "keys" / "public")
    assert not missing.ok and (missing.reason or "").startswith("cannot open the audit database")


# --- the tree module itself ---------------------------------------------------------------------------------


def memory_tree(leaves: list[bytes]) -> tuple[MerkleTree, dict[tuple[int, int], bytes]]:
    stored: dict[tuple[int, int], bytes] = {}
    tree = MerkleTree(SHA256, 0, lambda level, index: stored.get((level, index)))
    for leaf in leaves:
        tree.append(leaf)
        stored.update({(level, index): digest for level, index, digest in tree.take_pending()})
        tree.stored()
    return tree, stored


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17])
def test_the_stored_tree_gives_the_rfc_roots_and_proofs(size: int) -> None:
    leaves = [oracle_leaf(bytes([i])) for i in range(size)]
    tree, stored = memory_tree(leaves)
    assert tree.size == size and tree.root() == oracle_mth(leaves) == tree.root_at(size)
    assert tree.root_at(0) == hashlib.sha256(b"").digest()
    assert set(stored) == {(level, index) for level in range(6) for index in range(size >> level)}
    reopened = MerkleTree(SHA256, size, lambda level, index: stored.get((level, index)))
    assert reopened.size == size and reopened.root() == oracle_mth(leaves)
    for start in range(size):
        for end in range(start + 1, size + 1):
            assert reopened.subtree(start, end) == oracle_mth(leaves[start:end]), (start, end)
    for index in range(size):
        assert reopened.inclusion(index, size) == oracle_path(index, leaves)
    for old in range(1, size + 1):
        assert reopened.consistency(old, size) == oracle_subproof(old, leaves, True)
    with pytest.raises(ValueError, match=f"leaves up to {size + 1} are not in a tree of {size}"):
        reopened.subtree(0, size + 1)
    # An empty or reversed range has no root: named, not a division by its width of zero.
    for start, end in [(0, 0), (size, size), (size, size - 1), (-1, 1)]:
        with pytest.raises(
            ValueError, match=rf"^no leaves in \[{start}, {end}\): a subtree holds at least one$"
        ):
            reopened.subtree(start, end)
    reopened.append(oracle_leaf(b"next"))
    assert reopened.root() == oracle_mth([*leaves, oracle_leaf(b"next")])
    # The new leaf's node, and every perfect subtree it completes (those that end at the new size).
    completed = {(level, ((size + 1) >> level) - 1) for level in range(6) if (size + 1) % (1 << level) == 0}
    made = reopened.take_pending()
    assert {(level, index) for level, index, _ in made} == completed
    for level, index, digest in made:
        assert digest == oracle_mth([*leaves, oracle_leaf(b"next")][index << level : (index + 1) << level])
    assert reopened.take_pending() == []


def test_a_missing_node_is_named_and_the_cache_stays_bounded() -> None:
    leaves = [oracle_leaf(bytes([i])) for i in range(8)]
    _, stored = memory_tree(leaves)
    del stored[(1, 2)]
    reads: list[tuple[int, int]] = []

    def read(level: int, index: int) -> bytes | None:
        reads.append((level, index))
        return stored.get((level, index))

    tree = MerkleTree(SHA256, 8, read)
    assert reads == [(3, 0)]
    with pytest.raises(LookupError, match="the tree node at level 1, index 2 is not stored"):
        tree.subtree(4, 6)
    assert tree.subtree(0, 2) == oracle_mth(leaves[:2])
    assert tree.subtree(0, 2) == oracle_mth(leaves[:2])
    assert reads.count((1, 0)) == 1  # read once, then from memory
    tree.CACHE_LIMIT = 1
    tree.stored()
    assert tree.subtree(0, 2) == oracle_mth(leaves[:2])
    assert reads.count((1, 0)) == 2  # forgotten: low levels are dropped from memory past the limit


def test_a_record_s_leaf_and_a_pruned_record_s_placeholder(log_dir: Path) -> None:
    rows = rows_of(log_dir)
    leaves = oracle_leaves(rows)
    assert [record_leaf(SHA256, row) for row in rows] == leaves
    assert pruned_leaf(SHA256, 12) == oracle_leaf(b"mustcheck.leaf.pruned_before_tree.v1\n12")
    with closing(connect(log_dir)) as connection:
        assert stored_size(connection) == 25
        before = connection.execute("SELECT level, idx, hash FROM audit_tree_nodes ORDER BY 1, 2").fetchall()
        connection.execute("DELETE FROM audit_tree_nodes")
        assert stored_size(connection) == 0
        tree = stored_tree(connection, SHA256)
        assert catch_up(connection, tree, 0) == 25
        after = connection.execute("SELECT level, idx, hash FROM audit_tree_nodes ORDER BY 1, 2").fetchall()
        assert after == before and tree.root() == oracle_mth(leaves)
        connection.execute("DELETE FROM audit_tree_nodes")
        connection.execute("DELETE FROM audit_records WHERE seq <= 3")
        tree = stored_tree(connection, SHA256)
        assert catch_up(connection, tree, 3) == 25
        placeholders = [pruned_leaf(SHA256, seq) for seq in (1, 2, 3)]
        assert tree.root() == oracle_mth([*placeholders, *leaves[3:]])
        assert stored_tree(connection, SHA256).root() == tree.root()
        connection.execute("DELETE FROM audit_tree_nodes")
        connection.execute("DELETE FROM audit_records WHERE seq = 8")
        with pytest.raises(AuditIntegrityError, match="record 8 is missing before record 9"):
            catch_up(connection, stored_tree(connection, SHA256), 3)


def test_a_stored_tree_is_checked_against_a_signed_head(log_dir: Path) -> None:
    leaves = oracle_leaves(rows_of(log_dir))
    with closing(connect(log_dir)) as connection:
        tree = stored_tree(connection, SHA256)
        assert consistency_problem(tree, head_for(log_dir, 25)) is None
        assert consistency_problem(tree, head_for(log_dir, 9)) is None
        assert consistency_problem(tree, head_for(log_dir, 0, root=SHA256.empty_root())) is None
        assert consistency_problem(tree, head_for(log_dir, 9, root=oracle_mth(leaves[:8]))) == (
            f"the log's first 9 records are not the ones the tree head signed {HEAD_AT} covers "
            "(the log was rewritten)"
        )
        assert consistency_problem(tree, head_for(log_dir, 25, root=oracle_mth(leaves[:24]))) is not None
        assert consistency_problem(tree, head_for(log_dir, 26, root=bytes(32))) == (
            f"the log ends at record 25 but a tree head signed {HEAD_AT} covers 26: record 26 is missing "
            "(the log was cut or rewound)"
        )
        assert consistency_problem(tree, head_for(log_dir, 28, root=bytes(32))) == (
            f"the log ends at record 25 but a tree head signed {HEAD_AT} covers 28: records 26–28 are "
            "missing (the log was cut or rewound)"
        )
        connection.execute("DELETE FROM audit_tree_nodes WHERE level = 3 AND idx = 0")
        assert consistency_problem(stored_tree(connection, SHA256), head_for(log_dir, 9)) == (
            "the tree cannot be checked against the head of size 9: the tree node at level 3, index 0 "
            "is not stored"
        )
        heads = read_heads(connection)
        assert [head.size for head in heads] == [25]
        assert latest_head(connection) == heads[0]
        insert_heads(connection, [head_for(log_dir, 9), head_for(log_dir, 12)])
        connection.execute("INSERT INTO audit_tree_heads VALUES (30, 'z', 'not a head')")
        assert [head.size for head in read_heads(connection)] == [9, 12, 25]
        assert latest_head(connection) is None  # the largest is unreadable
        connection.execute("DELETE FROM audit_tree_heads")
        assert latest_head(connection) is None
        assert read_node(connection, 0, 99) is None
        insert_nodes(connection, [(0, 99, b"x")])
        assert read_node(connection, 0, 99) == b"x"


@pytest.mark.parametrize("size", [257, 300, 301, 513])
def test_proofs_of_trees_past_256_leaves_agree_with_the_rfc(size: int) -> None:
    """Positions and sizes past 256 are distinct int objects in CPython: an identity test (``is``)
    where an equality is meant fails only there."""
    leaves = [oracle_leaf(i.to_bytes(2, "big")) for i in range(size)]
    root = oracle_mth(leaves)
    subtree = subtrees_of(SHA256, leaves)
    for index in sorted({0, 255, 256, 257, size - 3, size - 2, size - 1} - {size}):
        path = oracle_path(index, leaves)
        assert inclusion_proof(index, size, subtree) == path
        assert root_from_inclusion_proof(SHA256, index, size, leaves[index], path) == root
    for old in sorted({1, 256, 257, 258, size - 2, size - 1} - {size, size + 1}):
        proof = oracle_subproof(old, leaves, True)
        assert consistency_proof(old, size, subtree) == proof
        assert verify_consistency(SHA256, old, size, oracle_mth(leaves[:old]), root, proof)


def test_a_gap_of_one_record_past_seq_256_is_named_as_one() -> None:
    records = chained(302)
    assert walk([*records[:299], *records[300:]])[1] == "sequence gap: 301 follows 299 (record 300 deleted)"
    assert (
        walk([*records[:299], *records[301:]])[1] == "sequence gap: 302 follows 299 (records 300–301 deleted)"
    )
    late = ChainWalker(after_seq=299, after_hash=records[298].record_hash)
    assert (
        walk(records[300:], late)[1]
        == "sequence gap: the log starts at 301, expected 300 (record 300 deleted)"
    )


def test_a_pruned_log_verifies_from_its_anchor_and_keeps_its_tree(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(days=4 * 365)
    log = AuditLog.open(tmp_path, checkpoint_every=4, checkpoint_interval_s=3600)
    log.append_many_sync(
        dataclasses.replace(log_event(number), at=old + dt.timedelta(minutes=number))
        for number in range(1, 6)
    )
    log.close()
    early = verified(tmp_path, log_id=log_id_of(tmp_path)).state  # from before the records pruned below
    assert early is not None and early.size == 5
    log = AuditLog.open(tmp_path, checkpoint_every=4, checkpoint_interval_s=3600)
    log.append_many_sync(
        dataclasses.replace(log_event(number), at=old + dt.timedelta(minutes=number))
        for number in range(6, 11)
    )
    log.append_many_sync(log_event(number) for number in range(11, 16))
    log.close()  # the records reach the database's index
    before = oracle_leaves(rows_of(tmp_path))
    assert len(before) == 15
    log = AuditLog.open(tmp_path, checkpoint_every=4, checkpoint_interval_s=3600)
    assert log.prune(before=retention_limit(now), now=now, by="records-officer") == 10
    log.close()
    rows = rows_of(tmp_path)
    assert [row[0] for row in rows] == list(range(11, 17))  # 16: the prune's own record
    log_id = log_id_of(tmp_path)
    report = verified(tmp_path, log_id=log_id)
    assert report.ok, report.reason
    assert (report.first_seq, report.last_seq, report.records_checked) == (11, 16, 6)
    assert report.state is not None and report.state.size == 16
    assert report.state.root() == oracle_mth([*before, *oracle_leaves(rows)[-1:]])
    # A state older than the prune anchor is of no use: the walk starts from the anchor, as without one.
    from_early = verified(tmp_path, log_id=log_id, state=early)
    assert from_early.ok, from_early.reason
    assert (from_early.first_seq, from_early.last_seq, from_early.records_checked) == (11, 16, 6)
    pruned_head = head_for(tmp_path, 12, root=oracle_mth(before[:12]))
    assert verified(tmp_path, heads=[(pruned_head, "a receipt")]).ok

    anchor_hash = (
        sqlite3.connect(tmp_path / "audit.sqlite3")
        .execute("SELECT record_hash FROM audit_prune_anchors WHERE seq = 10")
        .fetchone()[0]
    )
    copy = tmp_path.parent / "stray"
    shutil.copytree(tmp_path, copy)
    with closing(connect(copy)) as connection:
        others = ", ".join(RECORD_COLUMNS[1:])
        connection.execute(f"INSERT INTO audit_records SELECT 9, {others} FROM audit_records WHERE seq = 11")
    assert problem(copy) == (9, "record 9 precedes the prune anchor at seq 10 but is present")
    with closing(connect(tmp_path)) as connection:
        connection.execute("UPDATE audit_prune_anchors SET record_hash = ? WHERE seq = 10", ("0" * 64,))
    seq, reason = problem(tmp_path)
    assert seq == 10 and reason.startswith(
        "prune anchor at seq 10 is not backed by a signed prune checkpoint"
    )
    with closing(connect(tmp_path)) as connection:
        connection.execute("UPDATE audit_prune_anchors SET record_hash = ? WHERE seq = 10", (anchor_hash,))
        connection.execute("UPDATE audit_records SET prev_hash = ? WHERE seq = 11", ("1" * 64,))
    assert problem(tmp_path) == (
        11,
        "record 11: previous-hash link broken (deleted or reordered records before it)",
    )
    with closing(connect(tmp_path)) as connection:
        connection.execute("UPDATE audit_records SET prev_hash = ? WHERE seq = 11", (anchor_hash,))
        connection.execute("DELETE FROM audit_tree_nodes WHERE level = 3 AND idx = 0")
    pruned_before_tree = verified(tmp_path, log_id=log_id)
    assert pruned_before_tree.ok and pruned_before_tree.state is None  # nothing to rebuild the tree from
    assert pruned_before_tree.tree_heads_checked == 0


# --- checkpoints and their mirror file ----------------------------------------------------------------------


def test_forged_checkpoints_and_mirror_lines_are_named(log_dir: Path) -> None:
    forged = base64.b64encode(bytes(64)).decode()
    mirror = log_dir / "checkpoints.jsonl"
    lines = mirror.read_text().splitlines()
    mirror.write_text("".join(line + "\n" for line in [*lines, "not a checkpoint"]))
    assert problem(log_dir) == (None, "checkpoints.jsonl line 4 is not a valid checkpoint")
    line = json.loads(lines[0])
    line.update(seq=30, signature=forged)
    mirror.write_text("".join(text + "\n" for text in [*lines, "", json.dumps(line)]))
    assert problem(log_dir) == (30, "checkpoints.jsonl line 5: checkpoint at seq 30: signature invalid")
    mirror.write_text("".join(text + "\n" for text in lines))
    with closing(connect(log_dir)) as connection:
        connection.execute("UPDATE audit_checkpoints SET signature = ? WHERE seq = 20", (forged,))
    report = verified(log_dir)
    assert (report.problem_seq, report.reason) == (20, "checkpoint at seq 20: signature invalid")
    assert (report.checkpoints_checked, report.mirror_entries_checked) == (1, 0)


def test_a_checkpoint_names_the_record_it_signed(log_dir: Path) -> None:
    forge(log_dir, 17, 25, purpose="rewritten")
    assert problem(log_dir) == (
        20,
        "checkpoint at seq 20: record 20 does not have the signed hash (rewritten)",
    )
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_records WHERE seq > 16")
    assert problem(log_dir) == (
        20,
        "checkpoint at seq 20 refers to a record that is missing: the log was truncated",
    )


def test_the_mirror_file_and_the_database_must_agree(log_dir: Path) -> None:
    mirror = log_dir / "checkpoints.jsonl"
    lines = mirror.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [10, 20, 25]
    mirror.write_text("".join(line + "\n" for line in [lines[0], lines[2]]))
    assert problem(log_dir) == (
        20,
        "checkpoint at seq 20 is in the database but missing from checkpoints.jsonl "
        "(the mirror file was edited)",
    )
    mirror.write_text("".join(line + "\n" for line in lines[:2]))
    assert verified(log_dir).ok  # the last one may still be on its way to the file
    mirror.write_text("".join(line + "\n" for line in lines))
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_checkpoints WHERE seq = 10")
    assert problem(log_dir) == (
        10,
        "checkpoint rows missing from the database but present in checkpoints.jsonl (seq 10): records or "
        "checkpoints were deleted",
    )
    mirror.unlink()
    assert problem(log_dir) == (None, "checkpoints.jsonl is missing but the database has 2 checkpoints")
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_checkpoints")
    assert problem(log_dir) == (
        None,
        "25 records but no signed checkpoint: nothing shows the log was not cut off or rewritten "
        "(checkpoints deleted?)",
    )


def test_of_checkpoints_deleted_from_the_database_the_lowest_is_named_whatever_the_mirror_s_order(
    log_dir: Path,
) -> None:
    mirror = log_dir / "checkpoints.jsonl"
    lines = mirror.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [10, 20, 25]
    with closing(connect(log_dir)) as connection:
        connection.execute("DELETE FROM audit_checkpoints WHERE seq < 25")
    for order in ([0, 1, 2], [1, 0, 2], [2, 1, 0]):
        mirror.write_text("".join(lines[index] + "\n" for index in order))
        assert problem(log_dir) == (
            10,
            "checkpoint rows missing from the database but present in checkpoints.jsonl (seq 10): records or "
            "checkpoints were deleted",
        ), order


def test_a_mirror_line_that_differs_from_its_row_is_named(log_dir: Path) -> None:
    mirror = log_dir / "checkpoints.jsonl"
    lines = mirror.read_text().splitlines()
    keyring = KeyRing.load_or_create(log_dir / "keys")
    with closing(connect(log_dir)) as connection:
        kind, seq, at, key_id = connection.execute(
            "SELECT kind, seq, at, key_id FROM audit_checkpoints WHERE seq = 20"
        ).fetchone()
    # A genuine signature, by the log's own key, over another record hash: the line verifies on its own.
    signed = signed_bytes(CheckpointKind(kind), seq, "f" * 64, dt.datetime.fromisoformat(at), key_id)
    signature = base64.b64encode(keyring.signer(key_id).sign(signed)).decode()
    line = json.loads(lines[1])
    line.update(record_hash="f" * 64, signature=signature)
    mirror.write_text("".join(text + "\n" for text in [lines[0], json.dumps(line), lines[2]]))
    assert problem(log_dir) == (20, "checkpoint at seq 20 differs between the database and checkpoints.jsonl")


def test_a_live_log_s_journal_records_are_verified_too(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path, checkpoint_every=4, checkpoint_interval_s=3600)
    try:
        log.append_many_sync(log_event(number) for number in range(1, 7))
        report = verified(tmp_path)
        assert report.ok, report.reason
        assert (report.first_seq, report.last_seq, report.records_checked) == (1, 6, 6)
    finally:
        log.close()
    assert verified(tmp_path).records_checked == 6
    unreadable = tmp_path.parent / "unreadable"
    shutil.copytree(tmp_path, unreadable)
    with closing(connect(unreadable)) as connection:
        connection.execute("UPDATE audit_records SET detail = '[1]' WHERE seq = 3")
    assert problem(unreadable) == (
        3,
        "record 3: stored fields cannot be read (detail is not a JSON object) (altered)",
    )
    unknown = verify_log(tmp_path / "audit.sqlite3", tmp_path / "no-such-keys")
    assert unknown.problem_seq == 4
    assert (unknown.reason or "").endswith("which is not among the public keys")


def test_an_unreadable_journal_is_named_and_never_verifies(log_dir: Path) -> None:
    journal = log_dir / "audit.journal"
    assert journal.with_suffix(".sqlite3") == log_dir / "audit.sqlite3"
    journal.write_bytes(b"not a journal frame")
    report = verified(log_dir)
    assert not report.ok and report.tampered
    assert report.reason == "audit.journal: no frame starts at offset 0 (altered or damaged)"
    # Nothing was checked: no count claims otherwise.
    counts = (report.records_checked, report.checkpoints_checked, report.mirror_entries_checked)
    assert counts == (0, 0, 0) and report.problem_seq is None


def test_records_in_whole_frames_past_an_erased_stretch_of_the_journal_are_named(log_dir: Path) -> None:
    """A journal whose first frame was zeroed, with a whole frame after it: if that frame holds records the
    database lacks, acknowledged records would vanish unseen, so the log is tampered; if it holds only
    records the database has (indexed, then the journal emptied), nothing is lost."""
    last = rows_of(log_dir)[-1]
    journal_path = log_dir / "audit.journal"
    for seqs, lost in (((26, 27), True), ((24, 25), False)):
        journal_path.unlink(missing_ok=True)
        journal = Journal(journal_path)
        journal.append([(seqs[0], *last[1:])], [])
        first_frame = journal.size
        journal.append([(seqs[1], *last[1:])], [])
        journal.close()
        data = journal_path.read_bytes()
        journal_path.write_bytes(bytes(first_frame) + data[first_frame:])
        if lost:
            assert problem(log_dir) == (
                26,
                "the journal: records 27–27 lie in whole frames beyond a zeroed stretch of the journal (from "
                "offset 0): part of the journal was erased (altered or damaged)",
            )
        else:
            report = verified(log_dir)
            assert report.ok, report.reason


def test_a_record_whose_seq_is_not_a_number_is_named_without_one(log_dir: Path) -> None:
    with closing(connect(log_dir)) as connection:
        others = ", ".join(RECORD_COLUMNS[1:])
        connection.execute(
            f"INSERT INTO audit_records SELECT 'x', {others} FROM audit_records WHERE seq = 25"
        )
    seq, reason = problem(log_dir)
    assert seq is None and reason.startswith("record x: stored fields cannot be read"), (seq, reason)


def test_a_gateway_s_record_of_a_cut_journal_tail_is_listed_as_a_repair(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path, checkpoint_every=10, checkpoint_interval_s=3600)
    log.append_many_sync(
        [
            AuditEvent(kind="admin", caller_id="", outcome=TAIL_CUT_OUTCOME),
            AuditEvent(kind="check", caller_id="approval", outcome=TAIL_CUT_OUTCOME),  # not the gateway's
            AuditEvent(kind="admin", caller_id="", outcome="audit.key_rotated"),  # another admin record
            AuditEvent(kind="access", caller_id="", outcome=TAIL_CUT_OUTCOME),  # a kind sorting before it
        ]
    )
    log.close()
    report = verified(tmp_path)
    assert report.ok and report.repairs == ("record 1 says a torn journal tail was cut off at start",)
    assert str(report) == (
        "audit log verifies (4 records, 1 checkpoints, 1 mirror entries checked); "
        "repaired: record 1 says a torn journal tail was cut off at start"
    )


def test_a_live_log_whose_journal_runs_past_the_stored_tree_verifies(tmp_path: Path) -> None:
    """Records 1-3 indexed (the stored tree has 3 leaves), record 4 only in the journal: the node over
    leaves 1-4 that record 4 completes is not stored yet, and is not compared (it is no deleted node)."""
    log = AuditLog.open(
        tmp_path, checkpoint_every=100, checkpoint_interval_s=3600, index_every=3, index_interval_s=3600
    )
    try:
        log.append_many_sync(log_event(number) for number in range(1, 4))
        log.append_many_sync([log_event(4)])  # the writer indexed 1-3 before it took this one
        with closing(connect(tmp_path)) as connection:
            assert stored_size(connection) == 3
        report = verified(tmp_path)
        assert report.ok, report.reason
        assert (report.first_seq, report.last_seq, report.records_checked) == (1, 4, 4)
    finally:
        log.close()


def test_a_live_log_rewritten_below_its_journal_is_found_by_the_head_of_the_stored_tree(
    tmp_path: Path,
) -> None:
    """A live log: records 1-5 indexed (the stored tree has 5 leaves, the database a signed head of size 5),
    record 6 only in the journal. Records 2-5 are rewritten, each rehashed and relinked, record 6 in the
    journal relinked to them, and every stored node recomputed (all by the oracles here): the chain, the
    journal and the stored nodes agree with each other, the only checkpoint (seq 1) still holds, and only the
    head of size 5 — exactly the stored tree's size, below the log's — still has the old root. The log's
    root at that size must be rebuilt and compared with it."""
    live = tmp_path / "live"
    log = AuditLog.open(
        live, checkpoint_every=100, checkpoint_interval_s=3600, index_every=5, index_interval_s=3600
    )
    copy = tmp_path / "copy"
    try:
        log.append_many_sync([log_event(1)])  # the first commit: a checkpoint at seq 1
        log.append_many_sync(log_event(number) for number in range(2, 6))  # indexed: 5 rows due
        log.append_many_sync([log_event(6)])  # journaled, not indexed
        shutil.copytree(live, copy)  # the files as they are while the log runs
    finally:
        log.close()
    old_leaves = oracle_leaves(rows_of(copy))
    with closing(connect(copy)) as connection:
        assert stored_size(connection) == 5
        assert [kind_seq for kind_seq in connection.execute("SELECT kind, seq FROM audit_checkpoints")] == [
            ("chain", 1)
        ]
        heads = {head.size: head for head in read_heads(connection)}
    assert sorted(heads) == [1, 5] and heads[5].root == oracle_mth(old_leaves)
    journal_path = copy / "audit.journal"
    journal_rows = read_journal(journal_path).rows
    assert [row[0] for row in journal_rows] == [6]
    report = verified(copy)
    assert report.ok and (report.records_checked, report.tree_heads_checked) == (6, 2), report.reason

    forge(copy, 2, 5, outcome="cleared")
    new_rows = rows_of(copy)
    new_leaves = oracle_leaves(new_rows)
    assert new_leaves[0] == old_leaves[0] and oracle_mth(new_leaves) != heads[5].root
    column = dict(zip(RECORD_COLUMNS, journal_rows[0], strict=True))
    column["prev_hash"] = new_rows[-1][-1]
    column["record_hash"] = oracle_record_hash(column["prev_hash"], column)
    journal = Journal(journal_path)
    journal.clear()
    journal.append([tuple(column[name] for name in RECORD_COLUMNS)], [])
    journal.close()
    with closing(connect(copy)) as connection:
        nodes = connection.execute("SELECT level, idx FROM audit_tree_nodes").fetchall()
        assert sorted(nodes) == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (2, 0)]
        for level, index in nodes:
            connection.execute(
                "UPDATE audit_tree_nodes SET hash = ? WHERE level = ? AND idx = ?",
                (oracle_mth(new_leaves[index << level : (index + 1) << level]), level, index),
            )

    assert problem(copy) == (
        5,
        f"the log's first 5 records do not have the root the tree head of size 5 signed {heads[5].at} "
        "(the audit database) signed (rewritten)",
    )
    # The same head handed in (from a receipt, say) is compared the same way.
    with closing(connect(copy)) as connection:
        connection.execute("DELETE FROM audit_tree_heads WHERE size = 5")
    assert problem(copy, heads=[(heads[5], "a receipt")])[0] == 5
    # Without that head the rewrite is consistent: nothing else shows it.
    report = verified(copy)
    assert report.ok and (report.records_checked, report.last_seq) == (6, 6), report.reason


def test_a_log_past_256_records_verifies(tmp_path: Path) -> None:
    """Node indexes past 256 are distinct int objects in CPython: comparing the stored node's index with the
    one wanted by identity would call every such node missing."""
    log = AuditLog.open(tmp_path, checkpoint_every=100, checkpoint_interval_s=3600)
    log.append_many_sync(log_event(number) for number in range(1, 261))
    log.close()
    report = verified(tmp_path)
    assert report.ok, report.reason
    assert report.records_checked == 260


def test_the_tree_catches_up_past_256_records(log_dir: Path) -> None:
    """Seqs past 256 are distinct int objects in CPython: an identity test where an equality is meant fails
    only there. (Copies of record 25 under new seqs: catching up reads records, it does not verify them.)"""
    with closing(connect(log_dir)) as connection:
        others = ", ".join(RECORD_COLUMNS[1:])
        connection.execute(
            "WITH RECURSIVE n(x) AS (SELECT 26 UNION ALL SELECT x + 1 FROM n WHERE x < 300) "
            f"INSERT INTO audit_records SELECT n.x, {others} FROM n, audit_records WHERE seq = 25"
        )
        connection.execute("DELETE FROM audit_tree_nodes")
        tree = stored_tree(connection, SHA256)
        assert catch_up(connection, tree, 0) == 300
        assert tree.root() == oracle_mth(oracle_leaves(rows_of(log_dir)))
        assert stored_size(connection) == 300
        assert consistency_problem(tree, head_for(log_dir, 301, root=bytes(32))) == (
            f"the log ends at record 300 but a tree head signed {HEAD_AT} covers 301: record 301 is missing "
            "(the log was cut or rewound)"
        )


def test_a_verification_s_report_and_state_cannot_be_changed(log_dir: Path) -> None:
    report = verified(log_dir, log_id=log_id_of(log_dir))
    assert report.state is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.ok = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.state.size = 3  # type: ignore[misc]


def test_an_incremental_verification_still_compares_the_stored_tree(log_dir: Path) -> None:
    """The records before the state are not walked again: the stored nodes over them are compared through the
    stored root, whichever way the root the altered node gives sorts against the records' root."""
    state = verified(log_dir, log_id=log_id_of(log_dir)).state
    assert state is not None
    leaves = oracle_leaves(rows_of(log_dir))
    root = oracle_mth(leaves)
    # The stored root of 25 leaves is node(level 4 index 0, the root of leaves 16-24) (RFC 9162 MTH).
    by_side: dict[bool, bytes] = {}
    for fill in range(256):
        altered = bytes([fill]) * 32
        by_side.setdefault(oracle_node(altered, oracle_mth(leaves[16:])) < root, altered)
        if len(by_side) == 2:
            break
    assert sorted(by_side) == [False, True]
    for altered in by_side.values():
        with closing(connect(log_dir)) as connection:
            connection.execute("UPDATE audit_tree_nodes SET hash = ? WHERE level = 4 AND idx = 0", (altered,))
        assert problem(log_dir, log_id=log_id_of(log_dir), state=state) == (
            None,
            "the stored tree nodes do not match the records (altered)",
        )


def test_unreadable_checkpoint_rows_are_named(log_dir: Path) -> None:
    with closing(connect(log_dir)) as connection:
        connection.execute("UPDATE audit_checkpoints SET at = 'yesterday' WHERE seq = 10")
    seq, reason = problem(log_dir)
    assert seq is None and reason.startswith("checkpoint or prune anchor rows cannot be read ("), reason


def test_unreadable_public_keys_are_named_with_nothing_checked(log_dir: Path) -> None:
    (log_dir / "keys" / "public" / "sign-0009-0badbad0.pem").write_text("not a key")
    report = verified(log_dir)
    assert not report.ok and (report.reason or "").startswith("cannot read the keys or the mirror file: ")
    assert (report.records_checked, report.checkpoints_checked, report.mirror_entries_checked) == (0, 0, 0)
