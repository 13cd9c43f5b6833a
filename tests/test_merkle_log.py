"""The audit log as a Merkle tree (RFC 9162): one signed tree head per commit, receipts that prove their
record, records cut from the end found by an auditor holding a receipt, proofs, old logs and receipts."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mustcheck import Client, InvalidReceipt, verify_receipt
from mustcheck.merkle import SHA256
from mustcheck.receipts import encode_receipt, parse_receipt, sign_receipt
from mustcheck.tree_head import TreeHead, sign_tree_head
from mustcheck_gateway.audit import KeyKind, KeyRing
from mustcheck_gateway.audit.tree import MerkleTree
from mustcheck_gateway.cli import main
from mustcheck_gateway.crypto.suites import server_suite
from mustcheck_gateway.server import GatewayConfig, GatewayThread
from mustcheck_gateway.store import AuditHead, ListStore, open_store
from mustcheck_gateway.store.audit_heads import HeadRejected

from conftest import POLICY_DIR
from factories import new_citizen_id, new_uscc
from provision import provision

MATTER = "MOF-0001"


class Deployment:
    """A gateway on a data directory of its own, started and stopped at will; one caller."""

    def __init__(self, data_dir: Path, crypto: str = "international") -> None:
        self.data_dir = data_dir
        self.config = GatewayConfig(
            data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, crypto=crypto
        )
        self.token = ""

    def clients(self) -> Iterator[Client]:
        with GatewayThread(self.config) as gateway:
            target = f"127.0.0.1:{gateway.port}"
            if not self.token:
                assert gateway.admin_token_file is not None
                self.token = provision(target, gateway.admin_token_file.read_text().strip(), "auditee")
            with Client(target, token=self.token) as client:
                yield client

    @property
    def keys(self) -> Path:
        return self.data_dir / "keys" / "public"


def _run(deployment: Deployment) -> Iterator[Client]:
    return deployment.clients()


def checked(deployment: Deployment, batches: int, singles: int) -> tuple[list[str], dict[str, bytes]]:
    """Run ``batches`` BatchChecks of 100 and ``singles`` single checks; the receipts, in order, and keys."""
    receipts: list[str] = []
    for client in _run(deployment):
        for _ in range(batches):
            batch = client.batch_check([new_uscc() for _ in range(100)], MATTER)
            receipts += [
                item.result.receipt.compact for item in batch.items if item.result and item.result.receipt
            ]
        for _ in range(singles):
            result = client.check(new_citizen_id(), MATTER)
            assert result.receipt is not None
            receipts.append(result.receipt.compact)
        keys = client.receipt_keys()
    return receipts, keys


def cut_from_the_end(data_dir: Path, count: int) -> int:
    """What an attacker does: delete the newest ``count`` records with everything that names them (the
    index's records, checkpoints, tree nodes and heads; the mirror's lines; the journal is empty after a
    clean stop and is zeroed anyway). Returns the seq of the last record kept."""
    connection = sqlite3.connect(data_dir / "audit.sqlite3")
    with connection:
        last = int(connection.execute("SELECT MAX(seq) FROM audit_records").fetchone()[0])
        keep = last - count
        connection.execute("DELETE FROM audit_records WHERE seq > ?", (keep,))
        connection.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (keep,))
        connection.execute("DELETE FROM audit_tree_heads WHERE size > ?", (keep,))
        for level in range(40):
            # A node covers leaves [idx·2^level, (idx+1)·2^level): drop every one reaching past the cut.
            connection.execute(
                "DELETE FROM audit_tree_nodes WHERE level = ? AND (idx + 1) * ? > ?",
                (level, 1 << level, keep),
            )
    connection.close()
    mirror = data_dir / "checkpoints.jsonl"
    kept = [line for line in mirror.read_text().splitlines() if json.loads(line)["seq"] <= keep]
    mirror.write_text("".join(line + "\n" for line in kept))
    journal = data_dir / "audit.journal"
    journal.write_bytes(b"\0" * journal.stat().st_size)
    return keep


def test_a_batch_shares_one_signed_head_and_every_receipt_proves_its_record(
    tmp_path: Path, crypto_suite: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = Deployment(tmp_path, crypto_suite)
    receipts, keys = checked(deployment, batches=1, singles=1)
    assert len(receipts) == 101
    verified = [verify_receipt(receipt, keys) for receipt in receipts]
    assert all(receipt.tree_head is not None for receipt in verified)
    signatures = {receipt.tree_head.signature for receipt in verified[:100] if receipt.tree_head}
    assert len(signatures) == 1  # one head, one signature for the whole batch
    head = verified[0].tree_head
    assert head is not None
    replica = (tmp_path / "replica.id").read_text().strip()
    assert head.log_id == replica and dict(head.algorithms) == server_suite(crypto_suite).public.algorithms
    assert head.size >= max(receipt.audit_seq for receipt in verified[:100])
    assert verified[100].tree_head is not None and verified[100].tree_head.size > head.size
    assert all(receipt.leaf_index == receipt.audit_seq - 1 for receipt in verified)
    assert max(len(receipt) for receipt in receipts) <= 2048
    # The log verifies against every receipt's head, and proves any record on request.
    receipts_file = tmp_path / "receipts.txt"
    receipts_file.write_text("\n".join(receipts) + "\n")
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--receipts", str(receipts_file)]) == 0
    assert main(["audit", "prove", str(verified[5].audit_seq), "--data-dir", str(tmp_path)]) == 0
    # A file written on another system (CRLF) is read; one that is no receipts file is named, line and all.
    receipts_file.write_bytes(b"\r\n".join(receipt.encode() for receipt in receipts[:3]) + b"\r\n")
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--receipts", str(receipts_file)]) == 0
    unreadable = {
        b"\n" + receipts[0].encode() + b"\n\xff\xfe\n": "receipts.txt line 3: not UTF-8 text",
        b"mcr2." + b"A" * 5_000_000: "receipts.txt line 1: over 8,192 characters",
        b"\n\n  \nmcr2.x\n": "receipts.txt line 4: not a genuine receipt",
    }
    for content, message in unreadable.items():
        receipts_file.write_bytes(content)
        capsys.readouterr()
        assert main(["audit", "verify", "--data-dir", str(tmp_path), "--receipts", str(receipts_file)]) == 2
        assert message in capsys.readouterr().err
    missing = tmp_path / "no-such-file.txt"
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--receipts", str(missing)]) == 2
    assert f"cannot read the receipts file {missing}: No such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("cut", [1, 10, 328])
def test_records_cut_from_the_end_are_found_by_an_auditor_holding_a_receipt(
    tmp_path: Path, cut: int, capsys: pytest.CaptureFixture[str], crypto_suite: str
) -> None:
    deployment = Deployment(tmp_path, crypto_suite)
    receipts, _ = checked(deployment, batches=4, singles=1)
    newest = parse_receipt(receipts[-1])
    keep = cut_from_the_end(tmp_path, cut)
    assert keep < newest.audit_seq
    held = tmp_path / "held.txt"
    held.write_text(receipts[-1] + "\n")
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--receipts", str(held)]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED" in out and "cut from the end" in out
    assert f"ends at record {keep}" in out


def test_an_incremental_verification_keeps_its_state_and_finds_a_cut_without_receipts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crypto_suite: str
) -> None:
    deployment = Deployment(tmp_path, crypto_suite)
    checked(deployment, batches=1, singles=2)
    state = tmp_path / "auditor.state"
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--state", str(state)]) == 0
    first = json.loads(state.read_text())
    checked(deployment, batches=0, singles=3)
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--state", str(state)]) == 0
    second = json.loads(state.read_text())
    assert second["size"] > first["size"]
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--state", str(state), "--full"]) == 0
    cut_from_the_end(tmp_path, 2)
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--state", str(state)]) == 1
    assert "missing or changed" in capsys.readouterr().out


def test_forged_heads_and_altered_tree_nodes_are_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crypto_suite: str
) -> None:
    deployment = Deployment(tmp_path, crypto_suite)
    receipts, keys = checked(deployment, batches=0, singles=3)
    connection = sqlite3.connect(tmp_path / "audit.sqlite3")
    with connection:
        (text,) = connection.execute(
            "SELECT head FROM audit_tree_heads ORDER BY size DESC LIMIT 1"
        ).fetchone()
        data = json.loads(text)
        data["root"] = base64.urlsafe_b64encode(b"\1" * 32).rstrip(b"=").decode()
        connection.execute("UPDATE audit_tree_heads SET head = ? WHERE head = ?", (json.dumps(data), text))
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 1
    assert "forged tree head" in capsys.readouterr().out
    with connection:
        connection.execute("UPDATE audit_tree_heads SET head = ? WHERE head = ?", (text, json.dumps(data)))
        connection.execute("UPDATE audit_tree_nodes SET hash = ? WHERE level = 0 AND idx = 0", (b"\2" * 32,))
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 1
    assert "stored tree nodes do not match" in capsys.readouterr().out
    connection.close()
    # A receipt whose head a stranger signed is refused, by the SDK and by `audit verify --receipts`.
    stranger = KeyRing.load_or_create(tmp_path / "stranger-keys", crypto_suite)
    kid = stranger.current_id(KeyKind.SIGN)
    genuine = parse_receipt(receipts[-1])
    assert genuine.tree_head is not None
    head = genuine.tree_head
    forged_head = sign_tree_head(
        head.log_id, head.size, head.root, head.at, head.key_id, stranger.signer(kid), stranger.suite.public
    )
    prefix, payload, proof, _ = receipts[-1].split(".")
    forged = (
        f"{prefix}.{payload}.{proof}.{base64.urlsafe_b64encode(forged_head.signature).rstrip(b'=').decode()}"
    )
    with pytest.raises(InvalidReceipt, match="signature does not match"):
        verify_receipt(forged, keys)
    held = tmp_path / "held.txt"
    held.write_text(forged + "\n")
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--receipts", str(held)]) != 0


def test_a_log_made_before_the_tree_is_converted_and_old_receipts_still_verify(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path)
    checked(deployment, batches=0, singles=4)
    keyring = KeyRing(tmp_path / "keys")
    kid = keyring.current_id(KeyKind.SIGN)
    connection = sqlite3.connect(tmp_path / "audit.sqlite3")
    with connection:  # the log as the previous version left it: records and checkpoints, no tree
        connection.execute("DELETE FROM audit_tree_nodes")
        connection.execute("DELETE FROM audit_tree_heads")
        (seq, at, subject, hmac_key) = connection.execute(
            "SELECT seq, at, subject_hash, hmac_key_id FROM audit_records WHERE kind = 'check' LIMIT 1"
        ).fetchone()
    connection.close()
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
    # A receipt of the first format (one Ed25519 signature per answer) for an old record.
    old = sign_receipt(
        {
            "id": "0" * 32,
            "caller": "auditee",
            "matter": MATTER,
            "subject": subject,
            "subject_key": hmac_key,
            "outcome": "no_record",
            "measures": [],
            "data_version": 1,
            "issued_at": at,
            "audit_seq": seq,
        },
        kid,
        keyring.signer(kid),
    )
    receipts, keys = checked(deployment, batches=0, singles=1)  # the writer converts the log at start
    assert verify_receipt(old, keys).audit_seq == seq
    new = verify_receipt(receipts[0], keys)
    assert new.tree_head is not None and new.tree_head.size == new.audit_seq  # covers every old record
    held = tmp_path / "held.txt"
    held.write_text(f"{old}\n{receipts[0]}\n")
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--receipts", str(held)]) == 0


def test_a_receipt_stays_within_2_kb_at_10_to_the_8_records() -> None:
    keyring_key = Ed25519PrivateKey.generate()
    size = 10**8
    head = sign_tree_head(
        "0123456789abcdef",
        size,
        b"\7" * 32,
        "2026-12-04T22:00:00.123456+00:00",
        "sign-0001-d0d99fb1",
        keyring_key,
    )
    answer = {
        "at": "2026-12-04T22:00:00.123456+00:00",
        "caller": "approval-system-of-a-province",
        "key": "hmac-0001-91704397",
        "matter": "MOHURD-0001",
        "measures": ["I-EXEMPLAR", "J-RESTRICT-1", "J-RESTRICT-2"],
        "outcome": "restrictions",
        "seq": size,
        "subject": "f" * 64,
        "version": 123456,
    }
    proof = [bytes([i]) * 32 for i in range((size - 1).bit_length())]
    assert len(proof) == 27
    compact = encode_receipt(answer, "e" * 64, proof, head)
    assert len(compact) <= 2048, len(compact)
    assert parse_receipt(compact).tree_head == head
    assert isinstance(TreeHead.from_json(head.to_json()), TreeHead) and SHA256.digest_size == 32


def test_the_store_keeps_a_tree_head_only_with_a_consistency_proof(store: ListStore) -> None:
    signer = Ed25519PrivateKey.generate()
    tree = MerkleTree(SHA256, 0, lambda level, index: None)
    for number in range(9):
        tree.append(SHA256.leaf(b"record %d" % number))

    def head(seq: int, size: int, root: bytes | None = None) -> AuditHead:
        tree_head = sign_tree_head(
            "log-a", size, root or tree.root_at(size), "2026-12-04T00:00:00+00:00", "k", signer
        )
        now = dt.datetime.now(dt.UTC)
        return AuditHead("log-a", seq, f"{seq:064x}", "k", "c2ln", now, now, tree_head.to_json())

    store.publish_audit_head(head(4, 4))
    store.publish_audit_head(head(7, 7), tree.consistency(4, 7))
    (kept,) = store.audit_heads()
    assert TreeHead.from_json(kept.tree_head).size == 7
    with pytest.raises(HeadRejected, match="not proven consistent"):
        store.publish_audit_head(head(9, 9), [])  # no proof
    with pytest.raises(HeadRejected, match="not proven consistent"):
        store.publish_audit_head(head(9, 9, root=b"\5" * 32), tree.consistency(7, 9))  # a rewritten log
    with pytest.raises(HeadRejected, match="carries no tree head"):
        now = dt.datetime.now(dt.UTC)
        store.publish_audit_head(AuditHead("log-a", 9, "0" * 64, "k", "c2ln", now, now))
    store.publish_audit_head(head(9, 9), tree.consistency(7, 9))
    assert TreeHead.from_json(store.audit_heads()[0].tree_head).size == 9


def test_a_cut_log_is_found_against_the_tree_head_published_to_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crypto_suite: str
) -> None:
    deployment = Deployment(tmp_path, crypto_suite)
    checked(deployment, batches=0, singles=3)
    checked(deployment, batches=0, singles=2)  # a second run: its head extends the first one's
    store = open_store(tmp_path)
    try:
        (published,) = store.audit_heads()
    finally:
        store.close()
    assert published.tree_head and TreeHead.from_json(published.tree_head).size == published.seq
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--store", str(tmp_path)]) == 0
    keep = cut_from_the_end(tmp_path, 1)
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--store", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "cut from the end" in out and "published to the store" in out and f"ends at record {keep}" in out


def test_a_writer_refuses_a_stored_tree_that_does_not_extend_its_signed_head(
    tmp_path: Path, crypto_suite: str
) -> None:
    deployment = Deployment(tmp_path, crypto_suite)
    checked(deployment, batches=0, singles=3)
    connection = sqlite3.connect(tmp_path / "audit.sqlite3")
    with connection:  # the oldest subtree of every level replaced: the tree's root is not the signed one
        connection.execute("UPDATE audit_tree_nodes SET hash = ? WHERE idx = 0", (b"\3" * 32,))
    connection.close()
    with pytest.raises(Exception, match="tamper alarm: the newest tree head in the audit database"):
        checked(deployment, batches=0, singles=1)
