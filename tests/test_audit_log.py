"""The tamper-evident audit log: protection of subjects, group commit, checkpoints, keys, verification
of tampered copies, retention. Real SQLite files under tmp_path; tampering is done with sqlite3 directly."""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import datetime as dt
import io
import json
import os
import shutil
import signal
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mustcheck.identifiers import normalise
from mustcheck_gateway.audit import (
    AuditError,
    AuditEvent,
    AuditLog,
    AuditLogClosed,
    KeyRing,
    RetentionError,
    retention_limit,
    verify_log,
)
from mustcheck_gateway.audit.journal import GROW_BYTES, Journal, TornTail, encode_frame, read_journal
from mustcheck_gateway.audit.record import RECORD_COLUMNS, AuditRecord, compute_record_hash

from factories import new_citizen_id, new_uscc
from threads import wait_until


def check_event(subject: str | None, **fields: object) -> AuditEvent:
    values: dict[str, object] = {
        "kind": "check",
        "caller_id": "approval",
        "department": "approval",
        "matter": "MOHURD-0001",
        "purpose": "建筑工程施工许可审批",
        "subject": subject,
        "subject_kind": "organization",
        "outcome": "no_record",
    }
    values.update(fields)
    return AuditEvent(**values)  # type: ignore[arg-type]


def database_bytes(data_dir: Path) -> bytes:
    return b"".join(
        path.read_bytes()
        for path in (
            data_dir / "audit.sqlite3",
            data_dir / "audit.sqlite3-wal",
            data_dir / "checkpoints.jsonl",
        )
        if path.exists()
    )


@pytest.fixture
def audit(tmp_path: Path, crypto_suite: str) -> Iterator[AuditLog]:
    log = AuditLog.open(
        tmp_path / "data", checkpoint_every=1000, checkpoint_interval_s=60, crypto=crypto_suite
    )
    yield log
    log.close()


# -- records and protected subjects ---------------------------------------------------------------


def test_a_detail_with_keys_that_are_not_strings_is_stored_as_verification_encodes_it(tmp_path: Path) -> None:
    # The writer stores the detail's text as the event encoded it: keys that are not strings must already
    # be strings there, in the order of the stored text, or the log would not verify.
    log = AuditLog.open(tmp_path / "data", checkpoint_every=1000, checkpoint_interval_s=60)
    detail = {10: "ten", 9: {True: [1, {2: "two"}]}}  # sorted as numbers 9, 10; as text "10", "9"
    log.append_sync(check_event(new_uscc(), detail=detail))
    (record,) = log.records()
    assert record.detail == {"10": "ten", "9": {"true": [1, {"2": "two"}]}}
    log.close()
    assert log.verify().ok


def test_a_record_holds_every_field_and_the_subject_only_protected(audit: AuditLog) -> None:
    subject = new_citizen_id()
    at = dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.UTC)
    seq = audit.append_sync(
        check_event(
            subject,
            subject_kind="person",
            authorization_ref="AUTH-2025-17",
            outcome="restrictions",
            measure_ids=("M-001", "M-014"),
            data_version=42,
            status="OK",
            latency_us=1830,
            detail={"batch": "B-1", "items": 1},
            at=at,
        )
    )
    (record,) = audit.records()
    assert (record.seq, record.at, record.caller_id, record.matter) == (seq, at, "approval", "MOHURD-0001")
    assert (record.outcome, record.measure_ids, record.data_version) == (
        "restrictions",
        ("M-001", "M-014"),
        42,
    )
    assert (record.authorization_ref, record.latency_us, record.detail) == (
        "AUTH-2025-17",
        1830,
        {"batch": "B-1", "items": 1},
    )
    assert record.hmac_key_id == audit.keyring.current_id("hmac")
    assert record.enc_key_id == audit.keyring.current_id("enc")
    assert len(record.subject_hash or "") == 64 and record.subject_enc
    assert record.prev_hash == "0" * 64 and record.record_hash == compute_record_hash(record)
    assert subject not in repr(record) and subject not in json.dumps(record.as_export())
    assert subject.encode() not in database_bytes(audit.path.parent)  # WAL included: the log is still open
    # The suite's algorithms, checked with an independent implementation: HMAC-SHA256 and AES-256-GCM, or
    # HMAC-SM3 and SM4-GCM (ciphertext = nonce || sealed || tag, bound to the key ids and the hash).
    suite = audit.keyring.suite.name
    mac = crypto_hmac.HMAC(
        audit.keyring.secret("hmac", record.hmac_key_id), hashes.SM3() if suite == "sm" else hashes.SHA256()
    )
    mac.update(normalise(subject).encode())
    assert record.subject_hash == mac.finalize().hex()
    enc_key = audit.keyring.secret("enc", record.enc_key_id)
    blob = base64.b64decode(record.subject_enc or "")
    block = algorithms.SM4(enc_key) if suite == "sm" else algorithms.AES(enc_key)
    decryptor = Cipher(block, modes.GCM(blob[:12], blob[-16:])).decryptor()
    decryptor.authenticate_additional_data(
        f"mustcheck.audit.subject.v1\n{record.enc_key_id}\n{record.hmac_key_id}\n{record.subject_hash}".encode()
    )
    assert decryptor.update(blob[12:-16]) + decryptor.finalize() == subject.encode()
    assert len(enc_key) == (16 if suite == "sm" else 32)
    audit.close()
    assert subject.encode() not in database_bytes(audit.path.parent)


def test_an_event_carrying_the_raw_subject_names_it_instead_and_is_still_written(tmp_path: Path) -> None:
    # A caller's text that repeats the subject (a purpose, a decision, a note) must neither store it in
    # clear nor fail the write: the refusal or answer it belongs to is audited all the same (R10).
    subject = new_uscc()
    event = check_event(
        subject, detail={"echo": f"checked {subject}", "nested": [{"note": subject}], "reason": "r"}
    )
    assert subject not in event.detail_json and "[subject]" in event.detail_json
    with AuditLog.open(tmp_path, checkpoint_interval_s=60) as log:
        (record,) = [log.records(since_seq=log.append_sync(event)).__next__()]
        assert record.detail["echo"] == "checked [subject]"
        assert record.detail["nested"] == [{"note": "[subject]"}]
    assert subject.encode() not in database_bytes(tmp_path)
    with pytest.raises(ValueError, match="timezone-aware"):
        check_event(subject, at=dt.datetime(2025, 1, 1))
    assert subject not in repr(check_event(subject))


def test_search_by_subject_and_reveal_survive_key_rotation(tmp_path: Path) -> None:
    subject, other = new_uscc(), new_uscc()
    log = AuditLog.open(tmp_path, checkpoint_interval_s=60)
    before = log.append_sync(check_event(subject))
    old_hmac, old_enc = log.keyring.current_id("hmac"), log.keyring.current_id("enc")
    log.keyring.rotate("hmac")
    log.keyring.rotate("enc")
    after = log.append_sync(check_event(subject))
    unrelated = log.append_sync(check_event(other))
    anonymous = log.append_sync(check_event(None, kind="admin"))

    found = log.query(subject=subject)
    assert [r.seq for r in found] == [before, after]
    assert found[0].hmac_key_id == old_hmac != found[1].hmac_key_id
    assert found[0].enc_key_id == old_enc != found[1].enc_key_id
    assert [r.seq for r in log.query(subject=f" {subject.lower()} ")] == [before, after]  # normalised
    assert log.reveal([before, after, unrelated, anonymous, 999], by="auditor-7", purpose="complaint 12") == [
        (before, subject),
        (after, subject),
        (unrelated, other),
        (anonymous, None),
        (999, None),
    ]
    (reveal,) = log.query(kind="reveal")
    assert (reveal.caller_id, reveal.purpose, reveal.detail) == (
        "auditor-7",
        "complaint 12",
        {"seqs": [before, after, unrelated, anonymous, 999]},
    )
    log.close()

    reopened = AuditLog.open(tmp_path)  # keys are read back from their files
    assert [r.seq for r in reopened.query(subject=subject)] == [before, after]
    assert reopened.reveal([before], by="auditor-7") == [(before, subject)]
    reopened.close()
    assert subject.encode() not in database_bytes(tmp_path)


def test_the_key_ring_writes_secret_files_0600_and_public_keys_apart(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path / "keys")
    secrets = sorted(p.name for p in (tmp_path / "keys").iterdir() if p.is_file())
    assert [name.split("-")[0] for name in secrets] == ["enc", "hmac", "sign", "suite"]
    assert (tmp_path / "keys" / "suite").read_text() == "international\n"  # the default suite, recorded
    for name in secrets:
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    new_sign = ring.rotate("sign")
    assert (tmp_path / "keys" / "public" / f"{new_sign}.pem").is_file()
    assert ring.key_ids("sign")[-1] == new_sign == ring.current_id("sign")
    assert len(KeyRing.load_or_create(tmp_path / "keys").key_ids("sign")) == 2  # nothing recreated


def test_query_filters_limit_and_export(audit: AuditLog) -> None:
    base = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    subjects = [new_uscc() for _ in range(6)]
    audit.append_many_sync(
        check_event(
            subject,
            at=base + dt.timedelta(hours=i),
            caller_id="approval" if i % 2 else "procurement",
            outcome="restrictions" if i < 3 else "no_record",
        )
        for i, subject in enumerate(subjects)
    )
    assert [r.seq for r in audit.query(caller_id="procurement")] == [1, 3, 5]
    assert [r.seq for r in audit.query(outcome="restrictions", caller_id="approval")] == [2]
    assert [
        r.seq for r in audit.query(since=base + dt.timedelta(hours=2), until=base + dt.timedelta(hours=4))
    ] == [3, 4]
    assert [r.seq for r in audit.query(limit=2)] == [5, 6]  # the newest, newest last
    assert audit.query(matter="none") == [] and audit.query(subject=new_uscc()) == []

    jsonl, table = io.StringIO(), io.StringIO()
    assert audit.export(jsonl, "jsonl", outcome="no_record") == 3
    assert audit.export(table, "csv") == 6
    exported = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    assert [row["seq"] for row in exported] == [4, 5, 6]
    assert "subject" not in exported[0] and "subject_enc" not in exported[0]  # only the keyed hash
    rows = list(csv.DictReader(io.StringIO(table.getvalue())))
    assert rows[0]["subject_hash"] == audit.query(limit=6)[0].subject_hash and "subject_enc" not in rows[0]
    complete = io.StringIO()
    audit.export(complete, include_ciphertext=True, caller_id="approval")
    assert [json.loads(line)["subject_enc"] for line in complete.getvalue().splitlines()] == [
        r.subject_enc for r in audit.query(caller_id="approval")
    ]
    for text in (jsonl.getvalue(), table.getvalue()):
        assert not any(subject in text for subject in subjects)
    with pytest.raises(ValueError, match="unknown export format"):
        audit.export(io.StringIO(), "xml")  # type: ignore[arg-type]


# -- group commit ----------------------------------------------------------------------------------


def test_concurrent_appends_from_threads_and_tasks_share_commits(audit: AuditLog) -> None:
    go = threading.Event()
    thread_seqs: list[int] = []
    lock = threading.Lock()

    def from_a_thread(i: int) -> None:
        go.wait()
        seq = audit.append_sync(check_event(f"T{i:04d}"))
        with lock:
            thread_seqs.append(seq)

    threads = [threading.Thread(target=from_a_thread, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()

    async def from_tasks() -> list[int]:
        go.set()
        return await asyncio.gather(*(audit.append(check_event(f"A{i:04d}")) for i in range(200)))

    task_seqs = asyncio.run(from_tasks())
    for thread in threads:
        thread.join()
    assert sorted(thread_seqs + task_seqs) == list(range(1, 401))
    assert audit.commits < 100, audit.commits  # one fsync per group, not per request
    assert audit.queue_depth == 0 and audit.last_commit_latency_s > 0
    assert audit.verify().ok


def test_a_batch_is_one_call_and_one_commit(audit: AuditLog) -> None:
    assert audit.append_many_sync(check_event(new_uscc(), kind="batch_item") for _ in range(50)) == list(
        range(1, 51)
    )
    assert audit.commits == 1

    async def batch() -> list[int]:
        return await audit.append_many([check_event(new_uscc(), kind="batch_item") for _ in range(10)])

    assert asyncio.run(batch()) == list(range(51, 61))
    assert audit.commits == 2
    assert audit.append_many_sync([]) == []


# -- checkpoints -----------------------------------------------------------------------------------


def test_a_checkpoint_every_n_records_and_a_final_one_on_close(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path, checkpoint_every=10, checkpoint_interval_s=60)
    for _ in range(35):
        log.append_sync(check_event(new_uscc()))
    # The first commit gets a head of its own: no log holds records without a signed head.
    assert [c.seq for c in log.checkpoints()] == [1, 10, 20, 30]
    log.close()
    reopened = AuditLog.open(tmp_path, checkpoint_every=10)
    assert [c.seq for c in reopened.checkpoints()] == [1, 10, 20, 30, 35]
    mirror = [json.loads(line)["seq"] for line in (tmp_path / "checkpoints.jsonl").read_text().splitlines()]
    assert mirror == [1, 10, 20, 30, 35]
    reopened.close()


def test_a_checkpoint_falls_due_by_time_with_few_records(audit: AuditLog, tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path / "timed", checkpoint_every=1000, checkpoint_interval_s=0.05)
    log.append_many_sync([check_event(new_uscc()), check_event(new_uscc())])
    deadline = time.monotonic() + 3
    while not log.checkpoints() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [c.seq for c in log.checkpoints()] == [2]
    time.sleep(0.15)  # no new records: no new checkpoint
    assert len(log.checkpoints()) == 1
    log.close()


def test_signing_key_rotation_and_verification_with_only_public_keys(
    tmp_path: Path, crypto_suite: str
) -> None:
    data = tmp_path / "data"
    log = AuditLog.open(data, checkpoint_every=5, checkpoint_interval_s=60, crypto=crypto_suite)
    log.append_many_sync(check_event(new_uscc()) for _ in range(5))
    first_kid = log.keyring.current_id("sign")
    new_kid = log.keyring.rotate("sign")
    log.append_many_sync(check_event(new_uscc()) for _ in range(5))
    log.close()
    assert [(c.seq, c.key_id) for c in log.checkpoints()] == [(5, first_kid), (10, new_kid)]

    offline = tmp_path / "offline"
    offline.mkdir()
    for name in ("audit.sqlite3", "checkpoints.jsonl"):
        shutil.copy2(data / name, offline / name)
    shutil.copytree(data / "keys" / "public", offline / "public")
    for secret in (data / "keys").glob("*-*.*"):
        secret.unlink()
    before = (offline / "audit.sqlite3").read_bytes()
    report = verify_log(offline / "audit.sqlite3", offline / "public")
    assert report.ok, report.reason
    assert (report.records_checked, report.checkpoints_checked, report.mirror_entries_checked) == (10, 2, 2)
    assert (offline / "audit.sqlite3").read_bytes() == before  # opened read-only


# -- tampering ---------------------------------------------------------------------------------------


@pytest.fixture
def closed_log(tmp_path: Path, crypto_suite: str) -> Path:
    """A closed log of 25 records with checkpoints at 10, 20 and (on close) 25, of each crypto suite;
    returns its directory."""
    log = AuditLog.open(tmp_path, checkpoint_every=10, checkpoint_interval_s=60, crypto=crypto_suite)
    log.append_many_sync(check_event(new_uscc(), detail={"n": i}) for i in range(1, 26))
    log.close()
    assert log.verify().ok
    return tmp_path


def tamper(data_dir: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    connection = sqlite3.connect(data_dir / "audit.sqlite3", isolation_level=None)
    for sql, parameters in statements:
        connection.execute(sql, parameters)
    connection.close()


def verify(data_dir: Path) -> tuple[int | None, str]:
    report = verify_log(data_dir / "audit.sqlite3", data_dir / "keys" / "public")
    assert report.tampered
    return report.problem_seq, report.reason or ""


def test_an_altered_record_is_found(closed_log: Path) -> None:
    tamper(closed_log, ("UPDATE audit_records SET outcome = 'restrictions' WHERE seq = ?", (17,)))
    assert verify(closed_log) == (17, "record 17: hash does not match its content (altered)")


def test_a_deleted_record_is_found(closed_log: Path) -> None:
    tamper(closed_log, ("DELETE FROM audit_records WHERE seq = ?", (12,)))
    assert verify(closed_log) == (13, "sequence gap: 13 follows 11 (record 12 deleted)")


def test_reordered_records_are_found(closed_log: Path) -> None:
    columns = RECORD_COLUMNS[1:]
    connection = sqlite3.connect(closed_log / "audit.sqlite3", isolation_level=None)
    select = f"SELECT {', '.join(columns)} FROM audit_records WHERE seq = ?"
    fifth, sixth = connection.execute(select, (5,)).fetchone(), connection.execute(select, (6,)).fetchone()
    update = f"UPDATE audit_records SET {', '.join(f'{c} = ?' for c in columns)} WHERE seq = ?"
    connection.execute(update, (*sixth, 5))
    connection.execute(update, (*fifth, 6))
    connection.close()
    assert verify(closed_log) == (
        5,
        "record 5: previous-hash link broken (deleted or reordered records before it)",
    )


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(closed_log: Path) -> None:
    connection = sqlite3.connect(closed_log / "audit.sqlite3", isolation_level=None)
    rows = connection.execute(
        f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_records WHERE seq >= 17 ORDER BY seq"
    )
    records = [AuditRecord.from_row(row) for row in rows]
    prev_hash = records[0].prev_hash
    for record in records:  # a forger who knows the hashing scheme re-hashes everything after the change
        changed = dataclasses.replace(record, outcome="restrictions", prev_hash=prev_hash)
        changed = dataclasses.replace(changed, record_hash=compute_record_hash(changed))
        connection.execute(
            "UPDATE audit_records SET outcome = ?, prev_hash = ?, record_hash = ? WHERE seq = ?",
            (changed.outcome, changed.prev_hash, changed.record_hash, changed.seq),
        )
        prev_hash = changed.record_hash
    connection.close()
    assert verify(closed_log) == (
        20,
        "checkpoint at seq 20: record 20 does not have the signed hash (rewritten)",
    )


def test_a_truncated_tail_with_its_checkpoint_rows_is_caught_by_the_mirror(closed_log: Path) -> None:
    tamper(
        closed_log,
        ("DELETE FROM audit_records WHERE seq > ?", (20,)),
        ("DELETE FROM audit_checkpoints WHERE seq > ?", (20,)),
    )
    assert verify(closed_log) == (
        25,
        "checkpoint rows missing from the database but present in checkpoints.jsonl (seq 25): "
        "records or checkpoints were deleted",
    )


def test_deleting_records_a_checkpoint_refers_to_is_found(closed_log: Path) -> None:
    tamper(closed_log, ("DELETE FROM audit_records WHERE seq > ?", (20,)))
    assert verify(closed_log) == (
        25,
        "checkpoint at seq 25 refers to a record that is missing: the log was truncated",
    )


def test_a_forged_checkpoint_signature_is_found(closed_log: Path) -> None:
    forged = base64.b64encode(bytes(64)).decode()
    tamper(closed_log, ("UPDATE audit_checkpoints SET signature = ? WHERE seq = ?", (forged, 20)))
    assert verify(closed_log) == (20, "checkpoint at seq 20: signature invalid")


def test_a_forged_mirror_line_is_found(closed_log: Path) -> None:
    mirror = closed_log / "checkpoints.jsonl"
    line = json.loads(mirror.read_text().splitlines()[0])
    line.update(seq=30, signature=base64.b64encode(bytes(64)).decode())
    with mirror.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    assert verify(closed_log) == (30, "checkpoints.jsonl line 4: checkpoint at seq 30: signature invalid")


def test_a_line_removed_from_the_mirror_is_found(closed_log: Path) -> None:
    mirror = closed_log / "checkpoints.jsonl"
    mirror.write_text("".join(line + "\n" for line in mirror.read_text().splitlines()[1:]))
    assert verify(closed_log) == (
        10,
        "checkpoint at seq 10 is in the database but missing from checkpoints.jsonl "
        "(the mirror file was edited)",
    )


def test_a_deleted_mirror_file_is_found(closed_log: Path) -> None:
    (closed_log / "checkpoints.jsonl").unlink()
    assert verify(closed_log) == (None, "checkpoints.jsonl is missing but the database has 3 checkpoints")


def test_checkpoints_signed_by_an_unknown_key_do_not_verify(closed_log: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = verify_log(closed_log / "audit.sqlite3", tmp_path / "empty")
    assert report.problem_seq == 10
    assert report.reason is not None and report.reason.endswith("which is not among the public keys")


def test_a_forged_prune_anchor_does_not_excuse_deleted_records(closed_log: Path) -> None:
    (record_hash,) = (
        sqlite3.connect(closed_log / "audit.sqlite3")
        .execute("SELECT record_hash FROM audit_records WHERE seq = 10")
        .fetchone()
    )
    tamper(
        closed_log,
        ("DELETE FROM audit_records WHERE seq <= ?", (10,)),
        (
            "INSERT INTO audit_prune_anchors VALUES (?, ?, ?, ?, ?)",
            (10, record_hash, "2020-01-01T00:00:00.000000+00:00", "2025-01-01T00:00:00.000000+00:00", 10),
        ),
    )
    seq, reason = verify(closed_log)
    assert (seq, reason.split(" (")[0]) == (
        10,
        "prune anchor at seq 10 is not backed by a signed prune checkpoint",
    )


# -- lifecycle and retention -----------------------------------------------------------------------


def test_verifying_a_live_log_while_it_is_written_finds_no_false_alarm(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path, checkpoint_every=3, checkpoint_interval_s=0.01)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            log.append_sync(check_event(new_uscc()))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports = [log.verify() for _ in range(15)]
    finally:
        stop.set()
        writer.join()
        log.close()
    assert all(report.ok for report in reports), [r.reason for r in reports if not r.ok]
    assert reports[-1].records_checked > 0


def test_an_unauthenticated_request_is_audited_with_an_empty_caller(audit: AuditLog) -> None:
    seq = audit.append_sync(
        AuditEvent(kind="check", caller_id="", status="UNAUTHENTICATED", outcome="denied")
    )
    assert [r.status for r in audit.query(caller_id="")] == ["UNAUTHENTICATED"] and seq == 1


def test_reopening_continues_the_sequence_and_the_chain(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path)
    with pytest.raises(AuditError, match="already open for writing"):
        AuditLog.open(tmp_path)  # a second writer would fork the chain
    log.append_many_sync(check_event(new_uscc()) for _ in range(3))
    log.close()
    with pytest.raises(AuditLogClosed):
        log.append_sync(check_event(None))
    with AuditLog.open(tmp_path) as reopened:
        assert reopened.append_sync(check_event(new_uscc())) == 4
        third, fourth = reopened.records(since_seq=3, until_seq=4)
        assert fourth.prev_hash == third.record_hash
        report = reopened.verify()
        assert report.ok and report.records_checked == 4


def test_close_flushes_everything_appended_before_it(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path)

    async def append_then_close() -> list[int]:
        tasks = [asyncio.ensure_future(log.append(check_event(new_uscc()))) for _ in range(100)]
        await asyncio.sleep(0)  # every task has queued its event
        log.close()
        return await asyncio.gather(*tasks)

    assert sorted(asyncio.run(append_then_close())) == list(range(1, 101))
    with AuditLog.open(tmp_path) as reopened:
        assert reopened.count() == 100 and reopened.verify().ok
        assert reopened.checkpoints()[-1].seq == 100  # the final checkpoint


def test_records_inside_retention_cannot_be_pruned(audit: AuditLog) -> None:
    now = dt.datetime.now(dt.UTC)
    audit.append_many_sync(check_event(new_uscc(), at=now - dt.timedelta(days=400)) for _ in range(3))
    limit = retention_limit(now)
    for before in (now - dt.timedelta(days=365), limit + dt.timedelta(days=1)):
        with pytest.raises(
            RetentionError, match=rf"kept 3 years \(R14\).*at most {limit.date().isoformat()}"
        ):
            audit.prune(before=before, now=now)
    assert audit.count() == 3 and audit.verify().ok


def test_records_past_retention_are_pruned_and_the_rest_still_verifies(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(days=4 * 365)
    log = AuditLog.open(tmp_path, checkpoint_every=4, checkpoint_interval_s=60)
    log.append_many_sync(check_event(new_uscc(), at=old + dt.timedelta(minutes=i)) for i in range(10))
    log.append_many_sync(check_event(new_uscc()) for _ in range(5))
    assert log.prune(before=retention_limit(now), now=now, by="records-officer") == 10
    assert [r.seq for r in log.records()][:1] == [11]
    (pruned,) = log.query(kind="admin")
    assert (pruned.caller_id, pruned.detail["records_deleted"], pruned.detail["through_seq"]) == (
        "records-officer",
        10,
        10,
    )
    assert log.prune(before=retention_limit(now), now=now) == 0  # nothing older is left
    report = log.verify()
    assert report.ok and report.first_seq == 11, report.reason
    log.close()
    with AuditLog.open(tmp_path, checkpoint_every=4) as reopened:
        reopened.append_sync(check_event(new_uscc()))
        assert reopened.verify().ok

    tamper(tmp_path, ("DELETE FROM audit_records WHERE seq = ?", (11,)))
    assert verify(tmp_path) == (12, "sequence gap: the log starts at 12, expected 11 (record 11 deleted)")


# -- the writer process and its journal ---------------------------------------------------------------


def writer_process_ids(db_path: Path) -> list[int]:
    """The audit writer processes of ``db_path`` that this test process started (Linux /proc)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            arguments = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            if "mustcheck_gateway.audit.writer_process" in arguments and str(db_path) in arguments:
                found.append(int(pid))
    return found


def test_a_killed_writer_process_is_started_again_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    log = AuditLog.open(tmp_path)
    subject = new_uscc()
    seq = log.append_sync(check_event(subject))
    [writer] = writer_process_ids(log.path)
    os.kill(writer, signal.SIGKILL)
    # Appends are refused (never acknowledged without their record) until a new writer runs.
    assert wait_until(lambda: log.writer_restarts == 1, timeout=20)
    [restarted] = writer_process_ids(log.path)
    assert restarted != writer
    later = log.append_sync(check_event(new_uscc()))
    assert later > seq
    assert [r.seq for r in log.query(subject=subject)] == [seq]
    [restart_record] = log.query(outcome="audit.writer_restarted")
    assert restart_record.caller_id == "system" and restart_record.seq < later
    assert log.verify().ok
    log.close()
    with AuditLog.open(tmp_path) as reopened:
        assert [r.seq for r in reopened.query(subject=subject)] == [seq]
        assert reopened.verify().ok


def test_the_journal_ends_at_its_zero_padding_and_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "audit.journal"
    journal = Journal(path)
    preallocated = path.stat().st_size
    assert preallocated >= GROW_BYTES // 2 and read_journal(path).rows == []
    journal.append([(1, "a"), (2, "b")], [])
    assert read_journal(path).rows == [(1, "a"), (2, "b")]
    assert path.stat().st_size == preallocated  # written in place: a sync has no size to write
    with path.open("r+b") as file:  # a crash in the middle of the next write
        file.seek(journal.size)
        file.write(encode_frame([(3, "c")], [])[:20])
    torn = read_journal(path)
    assert torn.rows == [(1, "a"), (2, "b")] and torn.torn == TornTail(journal.size, 20)
    journal.clear()
    assert read_journal(path).rows == []
    journal.append([(4, "d")], [])
    assert read_journal(path).rows == [(4, "d")]
    journal.close()
    reopened = Journal(path)
    assert reopened.size == journal.size  # continues after the last line
    reopened.close()
