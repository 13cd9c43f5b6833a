"""``mustcheck serve --workers N`` (issue 15): N processes serving one port as one gateway.

Two workers on one port both answer (the kernel spreads connections: a new SDK client is a new
connection), one Prometheus scrape counts both, and the one audit log verifies with the records of
both; a worker killed with SIGKILL is started again while the other answers; a second gateway on the
port is refused; a caller at twice its rate against both workers is held to its rate; a daily person
quota is exact across workers, and across replicas on PostgreSQL (the store counts); a ``Watch``
stream served by one worker hears of a change made through another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mustcheck import Client, RateLimited, RetryPolicy
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import check_pb2, check_pb2_grpc, lists_pb2, lists_pb2_grpc
from mustcheck_gateway.audit import verify_data_dir
from mustcheck_gateway.audit.sqlite_log import SqliteAuditStore
from mustcheck_gateway.auth.registry import DEFAULT_REFRESH_INTERVAL
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import GatewayConfig, GatewayThread

from backends import fresh_schema
from conftest import POLICY_DIR
from factories import new_citizen_id, new_uscc
from processes import ServeProcess
from provision import provision as provision_on_one

MATTER = "MOHURD-0001"
NO_RETRY = RetryPolicy(attempts=1)


class Workers:
    """A gateway of two workers (``ServeProcess``) with its metrics port and its admin token."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.data_dir = data_dir
        self.served = ServeProcess(data_dir, "--workers", "2", "--metrics", "127.0.0.1:0", *options)
        started = self.log_event("gateway_workers_started")
        self.metrics_port = int(started["metrics_port"])
        self.pids: list[int] = list(started["pids"])
        self.target = f"127.0.0.1:{self.served.port}"
        self.admin = (data_dir / "admin.token").read_text().strip()

    def log_event(self, name: str, *, after: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """The first operational log line ``name`` (JSON) at or after line ``after``, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.served.lines[after:]:
                if f'"{name}"' in line:
                    event: dict[str, Any] = json.loads(line)
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {name} in the gateway's log:\n" + "".join(self.served.lines))

    def metrics(self) -> dict[str, float]:
        """One scrape of the gateway's /metrics: ``{series: value}``."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                values[series] = float(value)
        return values

    def per_worker(self) -> list[float]:
        scraped = self.metrics()
        return [scraped.get(f'mustcheck_worker_checks_total{{worker="{i}"}}', 0.0) for i in range(2)]

    def stop(self) -> None:
        if self.served.process.poll() is None:
            self.served.stop(signal.SIGTERM)


def provision(target: str, admin_token: str, caller_id: str, **grant: Any) -> str:
    """Provision through one worker; the others see the new caller within their refresh interval."""
    token = provision_on_one(target, admin_token, caller_id, **grant)
    time.sleep(DEFAULT_REFRESH_INTERVAL * 1.5)
    return token


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    gateway = Workers(tmp_path / "gateway")
    try:
        yield gateway
    finally:
        gateway.stop()


def until_both_answer(gateway: Workers, one_client: Callable[[], object], *, tries: int = 60) -> int:
    """Call ``one_client`` (which opens a client, checks, closes it: a new connection) until both workers
    have answered since the start; return how many calls it made."""
    before = gateway.per_worker()
    for made in range(1, tries + 1):
        one_client()
        after = gateway.per_worker()
        if all(a > b for a, b in zip(after, before, strict=True)):
            return made
    raise AssertionError(f"{tries} connections all went to one worker: {gateway.per_worker()}")


def test_two_workers_answer_on_one_port_count_in_one_scrape_and_keep_one_audit_log(workers: Workers) -> None:
    token = provision(workers.target, workers.admin, "spread")
    code = new_uscc()

    def one_client() -> None:
        with Client(workers.target, token=token, timeout=10) as client:
            client.check(code, MATTER, purpose="spread")

    checks = until_both_answer(workers, one_client)
    scraped = workers.metrics()
    assert scraped["mustcheck_workers"] == 2.0

    def summed(prefix: str) -> float:
        return sum(value for series, value in scraped.items() if series.startswith(prefix))

    assert summed('mustcheck_checks_total{caller="spread"') == checks  # counted by both, summed in one scrape
    assert summed("mustcheck_request_latency_seconds_count") >= checks
    workers.stop()
    assert workers.served.process.returncode == 0
    report = verify_data_dir(workers.data_dir)  # one log: both workers' checks, chained and signed
    assert report.ok, report
    log = SqliteAuditStore(workers.data_dir / "audit.sqlite3")
    try:
        records = [r for r in log.records() if r.caller_id == "spread" and r.kind == "check"]
    finally:
        log.close()
    assert len(records) == checks


def test_a_killed_worker_is_started_again_while_the_other_answers_and_the_port_stays_the_gateways(
    workers: Workers, tmp_path: Path
) -> None:
    token = provision(workers.target, workers.admin, "survivor")
    code = new_uscc()
    killed = workers.pids[1]
    lines = len(workers.served.lines)
    os.kill(killed, signal.SIGKILL)
    # Once the supervisor has seen it end: connections the kernel queued on the dying worker's socket
    # before it closed are reset (SO_REUSEPORT), which a client sees as one failed call.
    ended = workers.log_event("gateway_worker_ended", after=lines)
    assert ended["worker"] == 1
    answered = 0
    for _ in range(10):  # new connections while one worker is down: the other answers them all
        with Client(workers.target, token=token, timeout=10) as client:
            client.check(code, MATTER, purpose="survive")
            answered += 1
    restarted = workers.log_event("gateway_worker_restarted", after=lines)
    assert restarted["worker"] == 1 and restarted["pid"] != killed
    assert answered == 10
    deadline = time.monotonic() + 10
    while workers.metrics()["mustcheck_workers"] != 2.0 and time.monotonic() < deadline:
        time.sleep(0.1)
    scraped = workers.metrics()
    assert scraped["mustcheck_workers"] == 2.0 and scraped["mustcheck_worker_restarts_total"] == 1.0
    # A second gateway on the port is refused, with many workers or one; the first serves on.
    for count in ("2", "1"):
        second = subprocess.run(
            [sys.executable, "-m", "mustcheck_gateway", "serve", "--listen", workers.target,
             "--workers", count, "--data-dir", str(tmp_path / f"other-{count}"),
             "--policies", str(POLICY_DIR)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUTF8": "1"},
        )  # fmt: skip
        assert second.returncode != 0 and "Traceback" not in second.stderr, second.stderr
        assert str(workers.served.port) in second.stderr and "in use" in second.stderr, second.stderr
    with Client(workers.target, token=token, timeout=10) as client:
        client.check(code, MATTER, purpose="after")
    workers.stop()
    assert workers.served.process.returncode == 0
    assert verify_data_dir(workers.data_dir).ok


def test_a_callers_rate_and_person_quota_are_its_own_across_the_workers(workers: Workers) -> None:
    rate, burst, window = 20.0, 5, 3.0
    token = provision(workers.target, workers.admin, "eager", rate=rate, burst=burst)
    code = new_uscc()
    before = workers.per_worker()
    accepted = refused = 0
    started = time.monotonic()
    first = last = 0.0
    sent = 0
    while time.monotonic() - started < window:
        with Client(workers.target, token=token, timeout=10, retry=NO_RETRY) as client:  # a new connection
            for _ in range(4):
                # Offered at twice the rate: the next request waits for its turn at 2 x rate.
                time.sleep(max(0.0, started + sent / (2 * rate) - time.monotonic()))
                sent += 1
                first = first or time.monotonic()
                try:
                    client.check(code, MATTER, purpose="rate")
                    accepted += 1
                except RateLimited:
                    refused += 1
                last = time.monotonic()
    after = workers.per_worker()
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)  # both workers served it
    allowed = burst + rate * (last - first)
    assert accepted <= allowed * 1.1, (accepted, refused, allowed)
    assert accepted >= 0.9 * rate * (last - first), (accepted, refused, allowed)
    assert refused > 0

    quota = 7
    person_token = provision(workers.target, workers.admin, "counted", daily_person_quota=quota)
    outcomes: list[bool] = []

    def one_person() -> None:
        with Client(workers.target, token=person_token, timeout=10, retry=NO_RETRY) as client:
            try:
                client.check(new_citizen_id(), MATTER, purpose="quota")
                outcomes.append(True)
            except RateLimited:
                outcomes.append(False)

    until_both_answer(workers, one_person)
    while len(outcomes) < quota + 5:
        one_person()
    assert outcomes.count(True) == quota and outcomes[:quota] == [True] * quota


def test_a_person_quota_is_exact_across_replicas_and_workers_on_postgresql(tmp_path: Path) -> None:
    with fresh_schema() as url:
        workers = Workers(tmp_path / "workers", "--store", url)
        replica = GatewayThread(
            GatewayConfig(
                data_dir=tmp_path / "replica", listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=url
            )
        )
        try:
            other = replica.start()
            quota = 9
            token = provision(workers.target, workers.admin, "two-replicas", daily_person_quota=quota)
            targets = [workers.target, f"127.0.0.1:{other.port}"]
            granted = 0
            for turn in range(quota + 6):  # in turn on each replica, each turn a new connection
                with Client(targets[turn % 2], token=token, timeout=10, retry=NO_RETRY) as client:
                    try:
                        client.check(new_citizen_id(), MATTER, purpose="quota")
                        granted += 1
                    except RateLimited:
                        pass
            assert granted == quota
            assert other.access.person_quota.used("two-replicas", dt.datetime.now(dt.UTC)) == quota
        finally:
            replica.stop()
            workers.stop()
        assert workers.served.process.returncode == 0


def _own_connection(target: str) -> grpc.Channel:
    """A channel with a connection of its own (gRPC shares one between channels to the same address)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def _blacklisting(subject: str) -> dict[str, Any]:
    today = dt.date.today()
    return {
        "source": "workers-test",
        "subject_code": subject,
        "subject_name": "示例建设有限公司",
        "subject_kind": "organization",
        "memorandum": "judgment-defaulters",
        "list_kind": "black",
        "initiating_department": "court",
        "decision_document": f"（{today.year}）示例执字第{subject[-6:]}号",
        "decision_date": (today - dt.timedelta(days=30)).isoformat(),
        "severity": "serious",
        "reason": "拒不履行生效判决",
        "effective_date": (today - dt.timedelta(days=29)).isoformat(),
        "punish_until": (today + dt.timedelta(days=300)).isoformat(),
        "display_until": (today + dt.timedelta(days=330)).isoformat(),
        "responsible_persons": [],
    }


def test_a_watch_stream_on_one_worker_hears_of_a_change_made_through_another(workers: Workers) -> None:
    """Each worker keeps its own memory of recent checks and follows the one store's change feed: a
    stream opened on one worker names a change an admin made through a connection the other serves."""
    token = provision(workers.target, workers.admin, "watcher")
    subject, key = new_uscc(), b"w" * 32
    channels: list[grpc.Channel] = []
    by_worker: dict[str, grpc.Channel] = {}  # a connection each worker answered, by its instance
    try:
        for _ in range(60):  # new connections until both workers have answered one
            channel = _own_connection(workers.target)
            channels.append(channel)
            answer = check_pb2_grpc.CheckServiceStub(channel).Check(
                check_pb2.CheckRequest(subject=subject, matter=MATTER),
                metadata=auth_metadata(token),
                timeout=10,
            )  # the subject checked on this worker: its streams may name it
            assert answer.gateway_instance
            by_worker.setdefault(answer.gateway_instance, channel)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, f"{len(channels)} connections all went to one worker"
        (watched_worker, watched), (other_worker, other) = by_worker.items()
        stream: Any = check_pb2_grpc.CheckServiceStub(watched).Watch(
            check_pb2.WatchRequest(hash_key=key), metadata=auth_metadata(token), timeout=60
        )
        hello = next(stream)
        assert hello.heartbeat and hello.gateway_instance == watched_worker
        change = lists_pb2_grpc.ListsServiceStub(other).AddEntry(
            lists_pb2.EntryRow(row_json=json.dumps(_blacklisting(subject), ensure_ascii=False)),
            metadata=auth_metadata(workers.admin),
            timeout=10,
        )
        event = next(e for e in stream if not e.heartbeat and e.data_version >= change.data_version)
        assert event.gateway_instance == watched_worker != other_worker
        assert hmac.new(key, subject.encode(), hashlib.sha256).digest() in event.subject_hashes
        stream.cancel()
    finally:
        for channel in channels:
            channel.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--workers", "0"), ("--workers", "-3"), ("--workers", "100000"), ("--import-workers", "100000")],
)
def test_a_worker_count_out_of_bounds_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    """A typo such as ``--workers 100000`` would start that many processes: refused, naming the bound."""
    data_dir = tmp_path / "data"
    assert main(["--lang", "en", "serve", "--data-dir", str(data_dir), option, value]) == 2
    err = capsys.readouterr().err
    assert f"refusing to start: {option} must be from" in err and f"not {value}" in err
    assert not data_dir.exists()  # nothing was opened, let alone started


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs: neither gone nor a zombie (an orphan's parent may be slow to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_whose_supervisor_was_killed_drain_quietly_and_end(tmp_path: Path) -> None:
    """A worker learns that its supervisor is gone from the end of its lifeline pipe. It drains and
    stops, without spinning a core while it drains (the pipe's end stays readable: a watcher left on it
    ran on every turn of the event loop), and leaves no process holding the port."""
    workers = Workers(tmp_path / "data", "--drain-seconds", "3")
    os.kill(workers.served.process.pid, signal.SIGKILL)
    workers.served.process.wait(timeout=10)
    time.sleep(0.5)  # the workers have seen the lifeline end and are draining
    alive = [pid for pid in workers.pids if _running(pid)]
    assert alive, "the workers are expected to drain for 3 s"
    before = {pid: _cpu_seconds(pid) for pid in alive}
    time.sleep(1.5)
    spent = {pid: _cpu_seconds(pid) - before[pid] for pid in alive if _running(pid)}
    assert all(seconds < 0.2 for seconds in spent.values()), spent  # a spinning worker: 0.45-1.5 s
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers.pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers.pids)
