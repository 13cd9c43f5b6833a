"""The audit log survives crashes, full disks, dead writers and rewinds (R10): no answer without its
record, no false alarm for a torn write, no silent repair of missing records.

Gateways run as ``mustcheck serve`` child processes, killed with SIGKILL where a crash is the point;
the full disk is a real one: a 20 MB tmpfs mounted for the test (needs root; skipped otherwise).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mustcheck import Client, MustCheckError
from mustcheck_gateway.audit import AuditEvent, AuditIntegrityError, AuditLog, CheckpointKind, verify_data_dir
from mustcheck_gateway.audit.journal import encode_frame, journal_path_for, parse_journal, read_journal
from mustcheck_gateway.chain_heads import HeadPublisher
from mustcheck_gateway.cli import main
from mustcheck_gateway.store import AuditHead, ListStore, open_store
from mustcheck_gateway.store.audit_heads import HeadRejected

from conftest import POLICY_DIR
from factories import new_citizen_id, new_uscc
from processes import ServeProcess
from provision import provision
from threads import wait_until

MATTER = "MOF-0001"
TAIL_CUT = "audit.journal_tail_cut"


# -- helpers ---------------------------------------------------------------------------------------


def writer_pid(gateway: ServeProcess) -> int | None:
    """The audit writer process the gateway runs now, if any (Linux /proc)."""
    for task in Path(f"/proc/{gateway.process.pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for pid in (task / "children").read_text().split():
                if "mustcheck_gateway.audit.writer_process" in Path(f"/proc/{pid}/cmdline").read_text():
                    return int(pid)
    return None


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie counts: it writes nothing more)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def crash(gateway: ServeProcess) -> None:
    """SIGKILL the gateway and its writer process, and wait until both are gone."""
    writer = writer_pid(gateway)
    gateway.stop(signal.SIGKILL)
    if writer is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(writer, signal.SIGKILL)
        assert wait_until(lambda: gone(writer), timeout=30)


def health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status: int = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        return status


def admin_token(data_dir: Path) -> str:
    return (data_dir / "admin.token").read_text().strip()


class Load:
    """Callers checking subjects as fast as they can; ``answered`` holds each subject answered."""

    def __init__(self, target: str, token: str, workers: int = 4) -> None:
        self.answered: list[str] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers)
        self._futures = [self._pool.submit(self._run, target, token, n) for n in range(workers)]

    def _run(self, target: str, token: str, worker: int) -> None:
        with Client(target, token=token, timeout=2) as client:
            while not self._stop.is_set():
                subject = new_citizen_id() if worker % 2 else new_uscc()
                try:
                    client.check(subject, MATTER)
                except MustCheckError:
                    with self._lock:
                        self.refused += 1
                    continue
                with self._lock:
                    self.answered.append(subject)

    def count(self) -> int:
        with self._lock:
            return len(self.answered)

    def reached(self, answers: int, timeout: float = 30) -> bool:
        """Whether ``answers`` checks have been answered within ``timeout`` seconds."""
        return wait_until(lambda: self.count() >= answers, timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()


def missing_records(data_dir: Path, subjects: list[str]) -> list[str]:
    log = AuditLog.open(data_dir)
    try:
        return [subject for subject in subjects if not log.query(subject=subject, kind="check")]
    finally:
        log.close()


# -- a torn journal tail ---------------------------------------------------------------------------


def tear_journal(data_dir: Path) -> int:
    """Leave what a crash in the middle of a journal write leaves: part of a frame. Returns its length."""
    path = journal_path_for(data_dir / "audit.sqlite3")
    end = read_journal(path).end
    partial = encode_frame([(10**6, "never acknowledged")], [])[:37]
    with path.open("r+b") as file:
        file.seek(end)
        file.write(partial)
    return len(partial)


@pytest.mark.slow
def test_a_torn_journal_tail_restarts_cleanly_and_verifies_as_repaired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = ServeProcess(tmp_path)
    target = f"127.0.0.1:{first.port}"
    token = provision(target, admin_token(tmp_path), "torn")
    subjects = [new_uscc() for _ in range(5)]
    with Client(target, token=token) as client:
        for subject in subjects:
            client.check(subject, MATTER)
    crash(first)
    torn = tear_journal(tmp_path)

    # Offline, before any restart: intact, with the torn tail named (not TAMPERED).
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "intact" in out and f"repaired: torn journal tail (an unfinished write of {torn} bytes" in out

    second = ServeProcess(tmp_path)  # starts: the tail is cut off and a record says so
    with Client(f"127.0.0.1:{second.port}", token=token) as client:
        client.check(new_uscc(), MATTER)
    second.stop(signal.SIGTERM)
    assert second.process.returncode == 0
    assert missing_records(tmp_path, subjects) == []
    log = AuditLog.open(tmp_path)
    try:
        [cut] = log.query(outcome=TAIL_CUT)
        assert cut.caller_id == "system" and cut.detail["bytes"] == torn
    finally:
        log.close()
    report = verify_data_dir(tmp_path)
    assert report.ok and report.repairs == (
        f"record {cut.seq} says a torn journal tail was cut off at start",
    )
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
    assert f"repaired: record {cut.seq}" in capsys.readouterr().out


def crash_copy(live: Path, crashed: Path) -> None:
    """The files of a running log as a power cut would leave them."""
    shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("*lock"))


def test_an_erased_journal_frame_is_tampering_not_a_silent_loss(tmp_path: Path) -> None:
    # Records acknowledged but not yet indexed live only in the journal. Zeroing the first frame's first
    # byte would make reading stop there and hand their sequence numbers out again; it is an alarm.
    live = tmp_path / "live"
    log = AuditLog.open(
        live, checkpoint_every=2, checkpoint_interval_s=3600.0, index_every=10**9, index_interval_s=3600.0
    )
    for _ in range(3):
        log.append_sync(AuditEvent(kind="check", caller_id="c", subject=new_uscc(), outcome="no_record"))
    crash_copy(live, tmp_path / "erased")
    log.close()
    journal = tmp_path / "erased" / "audit.journal"
    data = bytearray(journal.read_bytes())
    assert read_journal(journal).rows  # the records are in the journal only
    data[0] = 0
    journal.write_bytes(bytes(data))
    report = verify_data_dir(tmp_path / "erased")
    assert not report.ok and "erased" in (report.reason or "")
    with pytest.raises(AuditIntegrityError, match="erased"):
        AuditLog.open(tmp_path / "erased")
    assert journal.read_bytes() == bytes(data)  # nothing was repaired


def test_frames_beyond_a_zeroed_stretch_are_found() -> None:
    first, second = (encode_frame([(seq, f"record {seq}")], []) for seq in (1, 2))
    contents = parse_journal("j", bytes(len(first)) + second + bytes(100))
    assert contents.rows == [] and contents.stranded == [(2, "record 2")]
    assert parse_journal("j", first + bytes(200)).stranded == []


@pytest.mark.slow
def test_an_edited_journal_record_is_tampering_and_is_not_cut_off(tmp_path: Path) -> None:
    live = tmp_path / "live"
    log = AuditLog.open(
        live, checkpoint_every=2, checkpoint_interval_s=3600.0, index_every=10**9, index_interval_s=3600.0
    )
    for _ in range(3):
        log.append_sync(AuditEvent(kind="check", caller_id="c", subject=new_uscc(), outcome="no_record"))
    crash_copy(live, tmp_path / "edited")
    log.close()
    journal = tmp_path / "edited" / "audit.journal"
    data = bytearray(journal.read_bytes())
    at = data.index(b'"no_record"')
    data[at + 1 : at + 3] = b"NO"  # one record's outcome changed, the frame still complete
    journal.write_bytes(bytes(data))

    report = verify_data_dir(tmp_path / "edited")
    assert not report.ok and "checksum does not match" in (report.reason or "")
    with pytest.raises(AuditIntegrityError, match="checksum does not match"):
        AuditLog.open(tmp_path / "edited")
    assert journal.read_bytes() == bytes(data)  # nothing was repaired


def test_a_log_with_records_but_no_signed_head_does_not_verify(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path) as log:
        log.append_sync(AuditEvent(kind="check", caller_id="c", subject=new_uscc(), outcome="no_record"))
    assert verify_data_dir(tmp_path).ok  # closing signed a final checkpoint
    connection = sqlite3.connect(tmp_path / "audit.sqlite3")
    with connection:
        connection.execute("DELETE FROM audit_checkpoints")
    connection.close()
    (tmp_path / "checkpoints.jsonl").write_text("")
    report = verify_data_dir(tmp_path)
    assert not report.ok and "no signed checkpoint" in (report.reason or "")


# -- a dead writer ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sigkilled_writer_is_restarted_by_its_gateway(tmp_path: Path) -> None:
    gateway = ServeProcess(tmp_path)
    target = f"127.0.0.1:{gateway.port}"
    token = provision(target, admin_token(tmp_path), "writer-killed")
    load = Load(target, token)
    try:
        assert wait_until(lambda: load.count() >= 50, timeout=30)
        killed = writer_pid(gateway)
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        assert wait_until(lambda: writer_pid(gateway) not in (killed, None), timeout=30)
        before = load.count()
        assert wait_until(lambda: load.count() >= before + 50, timeout=30)  # answering again
        assert wait_until(lambda: health(target) == health_pb2.HealthCheckResponse.SERVING, timeout=30)
    finally:
        load.stop()
    gateway.stop(signal.SIGTERM)
    assert gateway.process.returncode == 0  # the same gateway throughout
    assert missing_records(tmp_path, load.answered) == []
    log = AuditLog.open(tmp_path)
    try:
        assert len(log.query(outcome="audit.writer_restarted")) == 1
        assert log.verify().ok
    finally:
        log.close()


# -- a full disk -----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 20 MB file system (tmpfs), unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    with path.open("wb", buffering=0) as ballast, contextlib.suppress(OSError):
        while True:
            ballast.write(bytes(1 << 16))


@pytest.mark.slow
def test_a_full_disk_under_load_refuses_checks_then_recovers_without_a_restart(small_disk: Path) -> None:
    data_dir = small_disk / "data"
    gateway = ServeProcess(data_dir, "--audit-min-free-mb", "4")
    target = f"127.0.0.1:{gateway.port}"
    try:
        token = provision(target, admin_token(data_dir), "disk-filler")
        load = Load(target, token)
        try:
            assert wait_until(lambda: load.count() >= 100, timeout=30)
            fill(small_disk / "ballast")
            assert wait_until(lambda: health(target) == health_pb2.HealthCheckResponse.NOT_SERVING)
            refused = load.refused
            answered = load.count()
            assert wait_until(lambda: load.refused >= refused + 20, timeout=30)
            with Client(target, token=token, timeout=2) as client, pytest.raises(MustCheckError) as refusal:
                client.check(new_uscc(), MATTER)
            assert "audit" in str(refusal.value)
            assert load.count() - answered < 50  # only calls already past the audit log, if any

            (small_disk / "ballast").unlink()  # space returns
            assert wait_until(lambda: health(target) == health_pb2.HealthCheckResponse.SERVING, timeout=30)
            answered = load.count()
            assert wait_until(lambda: load.count() >= answered + 100, timeout=30)
        finally:
            load.stop()
        assert gateway.process.poll() is None  # never restarted
    finally:
        gateway.stop(signal.SIGTERM)
    assert gateway.process.returncode == 0
    assert missing_records(data_dir, load.answered) == []
    log = AuditLog.open(data_dir, min_free_mb=0)
    try:
        [recovered] = log.query(outcome="audit.available_again")
        assert recovered.detail["refused"] >= 1 and "watermark" in recovered.detail["why"]
    finally:
        log.close()
    report = verify_data_dir(data_dir)
    assert report.ok, report.reason


# -- no rewind -------------------------------------------------------------------------------------


def rewind(data_dir: Path, keep_through: int) -> None:
    """What the attacker did: delete the newest records and checkpoints and trim checkpoints.jsonl."""
    connection = sqlite3.connect(data_dir / "audit.sqlite3")
    with connection:
        connection.execute("DELETE FROM audit_records WHERE seq > ?", (keep_through,))
        connection.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (keep_through,))
    connection.close()
    mirror = data_dir / "checkpoints.jsonl"
    kept = [line for line in mirror.read_text().splitlines() if f'"seq": {keep_through}' in line]
    mirror.write_text("".join(line + "\n" for line in kept))


@pytest.mark.slow
def test_a_rewound_log_is_refused_at_start_and_found_by_verify(tmp_path: Path) -> None:
    first = ServeProcess(tmp_path)
    target = f"127.0.0.1:{first.port}"
    token = provision(target, admin_token(tmp_path), "rewind")
    with Client(target, token=token) as client:
        client.check(new_uscc(), MATTER)
    first.stop(signal.SIGTERM)  # a final checkpoint: the head of a short log
    store = open_store(tmp_path)
    try:
        [early] = store.audit_heads()
    finally:
        store.close()
    second = ServeProcess(tmp_path)  # publishes a longer head on stop
    with Client(f"127.0.0.1:{second.port}", token=token) as client:
        for _ in range(5):
            client.check(new_uscc(), MATTER)
    second.stop(signal.SIGTERM)
    store = open_store(tmp_path)
    try:
        [head] = store.audit_heads()
    finally:
        store.close()
    assert head.seq > early.seq

    rewind(tmp_path, early.seq)
    refused = subprocess.run(
        [
            *(sys.executable, "-m", "mustcheck_gateway", "serve", "--listen", "127.0.0.1:0"),
            *("--data-dir", str(tmp_path), "--policies", str(POLICY_DIR)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "tamper alarm" in refused.stderr
    assert f"records {early.seq + 1}–{head.seq} are missing" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--store", str(tmp_path)]) != 0
    log_rows = sqlite3.connect(tmp_path / "audit.sqlite3")
    try:
        assert log_rows.execute("SELECT MAX(seq) FROM audit_records").fetchone()[0] == early.seq  # untouched
    finally:
        log_rows.close()


def test_the_store_keeps_a_head_only_if_it_extends_the_one_it_has(store: ListStore) -> None:
    now = dt.datetime.now(dt.UTC)

    def head(seq: int, record_hash: str) -> AuditHead:
        return AuditHead("replica-x", seq, record_hash, "k1", "c2lnbmF0dXJl", now, now)

    store.publish_audit_head(head(5, "a" * 64))
    store.publish_audit_head(head(5, "a" * 64))  # the same head again
    for rewound in (head(4, "c" * 64), head(5, "b" * 64)):
        with pytest.raises(HeadRejected, match="does not extend"):
            store.publish_audit_head(rewound)
    store.publish_audit_head(head(6, "d" * 64))
    assert [(h.seq, h.record_hash) for h in store.audit_heads() if h.replica == "replica-x"] == [
        (6, "d" * 64)
    ]


# -- restart after a crash -------------------------------------------------------------------------

CRASH_ROUNDS = 12


@pytest.mark.slow
def test_restart_after_crashes_at_random_points_always_works(tmp_path: Path) -> None:
    """Gateway and writer SIGKILLed at random points under load (just after start, while the first
    checkpoint of the uncovered records is signed, mid-load, and the writer during its final checkpoint
    after its gateway died), restarted each time: every start succeeds and every answered check is found."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    gateway = ServeProcess(tmp_path)
    token = provision(f"127.0.0.1:{gateway.port}", admin_token(tmp_path), "crash-loop")
    answered: list[str] = []
    for round_number in range(CRASH_ROUNDS):
        load = Load(f"127.0.0.1:{gateway.port}", token, workers=3)
        try:
            assert load.reached(rng.choice([0, 1, 5, 20, 60, 150])), f"round {round_number}, seed {seed}"
            writer = writer_pid(gateway)
            assert writer is not None
            victims = [gateway.process.pid, writer]
            rng.shuffle(victims)
            os.kill(victims[0], signal.SIGKILL)
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0, 0.05))  # the survivor runs on a moment
            with contextlib.suppress(ProcessLookupError):
                os.kill(victims[1], signal.SIGKILL)
            gateway.process.wait(30)
        finally:
            load.stop()
        answered += load.answered
        gateway = ServeProcess(tmp_path)  # must start (ServeProcess fails the test otherwise)
    gateway.stop(signal.SIGTERM)
    assert gateway.process.returncode == 0, f"seed {seed}"
    assert len(answered) > CRASH_ROUNDS
    assert missing_records(tmp_path, answered) == [], f"seed {seed}"
    report = verify_data_dir(tmp_path)
    assert report.ok, f"{report.reason} (seed {seed})"


def test_a_head_is_published_only_while_the_log_still_holds_the_previous_one(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    log = AuditLog.open(tmp_path / "data")
    try:
        log.append_sync(AuditEvent(kind="check", caller_id="c", subject=new_uscc(), outcome="no_record"))
        log.sign_head()
        latest = log.latest_checkpoint(CheckpointKind.CHAIN)
        assert latest is not None
        now = dt.datetime.now(dt.UTC)
        # A head this log never reached (as if records after it had been deleted).
        beyond = AuditHead("r1", latest.seq + 7, "e" * 64, latest.key_id, latest.signature, now, now)
        publisher = HeadPublisher(log, store, "r1", interval_s=60, published=beyond)
        log.append_sync(AuditEvent(kind="check", caller_id="c", subject=new_uscc(), outcome="no_record"))
        log.sign_head()
        with pytest.raises(
            AuditIntegrityError, match=f"records {latest.seq + 2}–{latest.seq + 7} are missing"
        ):
            publisher.publish()
        assert store.audit_heads() == []
        honest = HeadPublisher(log, store, "r1", interval_s=60)
        published = honest.publish()
        assert published is not None and published.seq == latest.seq + 1
    finally:
        log.close()
        store.close()


def test_journal_frames_torn_or_damaged() -> None:
    first, second = encode_frame([(1, "a")], []), encode_frame([(2, "b")], [])
    padding = bytes(64)
    assert parse_journal("j", first + second + padding).rows == [(1, "a"), (2, "b")]
    for cut in (1, 3, 6, 13, len(second) - 1):  # inside the magic, the header, the payload
        torn = parse_journal("j", first + second[:cut] + padding)
        assert torn.rows == [(1, "a")] and torn.torn is not None and torn.torn.offset == len(first)
    altered = bytearray(first + second + padding)
    altered[len(first) + 14] ^= 0x01  # a byte of a complete frame's payload
    with pytest.raises(AuditIntegrityError, match="checksum does not match"):
        parse_journal("j", bytes(altered))
    with pytest.raises(AuditIntegrityError, match="no frame starts"):
        parse_journal("j", first + b"garbage" + padding)
    hole = bytearray(first + second + padding)
    hole[14] = 0  # a zero inside the first frame, an intact frame after it
    with pytest.raises(AuditIntegrityError, match="followed by another"):
        parse_journal("j", bytes(hole))


def test_a_fresh_gateway_stops_without_signing_its_first_head_twice(tmp_path: Path) -> None:
    # Its first commit (the first admin's record) carries a head; the head signed on stop must not be
    # a second checkpoint for the same record (a UNIQUE failure in the log, a head lost).
    gateway = ServeProcess(tmp_path / "data")
    gateway.stop(signal.SIGTERM)
    assert gateway.process.returncode == 0
    assert not [line for line in gateway.lines if "audit_checkpoint_failed" in line], gateway.lines
    report = verify_data_dir(tmp_path / "data")
    assert report.ok and report.checkpoints_checked >= 1
