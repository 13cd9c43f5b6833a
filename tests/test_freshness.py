"""Speed and freshness (R12): the gateway's cache, the Watch stream, the SDK's cache and fail modes.

Every test runs real gateways on loopback and talks to them through the SDK or the generated stub.
Time bounds below are generous correctness bounds (a change must arrive at all, through the stream),
not performance assertions; the benchmarks measure how fast.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from mustcheck import AsyncClient, CheckResult, CheckUnavailable, Client, Outcome, RetryPolicy
from mustcheck._channel import auth_metadata
from mustcheck._errors import GatewayUnreachable, PermissionDenied
from mustcheck._generated.v1 import admin_pb2, check_pb2, check_pb2_grpc
from mustcheck._retry import Attempts
from mustcheck.identifiers import citizen_id_check_character
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.auth.model import DEFAULT_WATCH_STREAMS
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread
from mustcheck_gateway.store import EntryStatus, ListStore, PersonRole
from mustcheck_gateway.store.changes import EVERYTHING
from mustcheck_gateway.store.codec import encode_entry

from conftest import POLICY_DIR, TEST_DEPARTMENT
from factories import days, make_entry, new_citizen_id, new_uscc
from provision import admin_stub, provision
from threads import wait_until

FAIL_CLOSED_MATTER = "MOF-0001"
SERVE_STALE_MATTER = "SAMR-0004"  # not must-check: the catalog lets it serve stale answers


@pytest.fixture
def own_gateway(tmp_path: Path) -> Iterator[tuple[GatewayThread, Gateway, str]]:
    """A gateway of the test's own (it may be stopped), with quick heartbeats and metrics served."""
    config = GatewayConfig(
        data_dir=tmp_path / "gateway",
        listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        watch_heartbeat_s=0.2,
        metrics_listen="127.0.0.1:0",
    )
    thread = GatewayThread(config)
    gateway = thread.start()
    assert gateway.admin_token_file is not None
    token = provision(
        f"127.0.0.1:{gateway.port}",
        gateway.admin_token_file.read_text().strip(),
        "fresh",
        department=TEST_DEPARTMENT,
    )
    try:
        yield thread, gateway, token
    finally:
        if thread.gateway is not None:
            thread.stop()


def blacklist(gateway: Gateway, subject: str, **options: Any) -> int:
    now = gateway.engine.clock()
    entry = make_entry(subject, effective=now - days(1), **options)
    return gateway.store.write_entries([entry], actor="test", action="add")


# -- the store records what each version touched -----------------------------------------


def test_each_write_records_the_subjects_it_touched(store: ListStore) -> None:
    organisation, person, new_person = new_uscc(), new_citizen_id(), new_citizen_id()
    now = dt.datetime.now(dt.UTC)
    entry = make_entry(
        organisation, effective=now - days(1), persons=((person, "张三", PersonRole.LEGAL_REPRESENTATIVE),)
    )
    before = store.data_version()
    added = store.write_entries([entry], actor="test", action="add")
    moved = store.set_status(
        entry.entry_id, EntryStatus.UNDER_OBJECTION, actor="t", action="objection", at=now
    )
    replaced = store.replace_entry(
        replace(entry, responsible_persons=(replace(entry.responsible_persons[0], person_id=new_person),)),
        actor="t",
        action="correct",
        at=now,
    )
    imported = store.import_entries(
        [encode_entry(make_entry(new_uscc(), effective=now))], actor="t", action="import", keep=lambda: True
    )
    legacy = store.allow_legacy_code("91350203M0001QAY9B", "pilot", actor="t", at=now)
    changes = {change.data_version: change.subjects for change in store.subject_changes(before)}
    assert changes[added] == {organisation, person}
    assert changes[moved] == {organisation, person}
    # A correction reaches the person it names now and the one it named before (R7).
    assert changes[replaced] == {organisation, person, new_person}
    assert changes[imported.data_version] == {EVERYTHING}
    assert changes[legacy] == {"91350203M0001QAY9B"}
    assert list(changes) == sorted(changes)
    assert [c.data_version for c in store.subject_changes(before, limit=2)] == [added, moved]


# -- the gateway's cache --------------------------------------------------------------------


def test_gateway_cache_answers_repeat_lookups_and_never_hides_a_write(
    gateway: Gateway, target: str, token: str
) -> None:
    subject = new_uscc()
    cache = gateway.lookup_cache
    with Client(target, token=token) as client:
        assert client.check(subject, FAIL_CLOSED_MATTER).outcome is Outcome.NO_RECORD
        hits = cache.hits
        second = client.check(subject, FAIL_CLOSED_MATTER)
        assert second.outcome is Outcome.NO_RECORD
        assert cache.hits == hits + 1
        version = blacklist(gateway, subject)
        # No wait: the very next check sees the blacklisting, at the version that wrote it.
        after = client.check(subject, FAIL_CLOSED_MATTER)
        assert after.outcome is Outcome.RESTRICTIONS
        assert after.data_version >= version
        assert gateway.lookup_cache.hit_ratio() > 0


# -- Watch -------------------------------------------------------------------------------------


def keyed(key: bytes, subject: str) -> bytes:
    return hmac.new(key, subject.encode(), hashlib.sha256).digest()


def test_watch_streams_keyed_hashes_heartbeats_and_resumes(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    _, gateway, token = own_gateway
    key = b"k" * 32
    organisation, person = new_uscc(), new_citizen_id()
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        metadata = auth_metadata(token)
        for subject in (organisation, person):  # the stream names only subjects the caller checked
            stub.Check(
                check_pb2.CheckRequest(subject=subject, matter=FAIL_CLOSED_MATTER),
                metadata=metadata,
                timeout=10,
            )
        start = gateway.store.data_version()
        stream: Any = stub.Watch(check_pb2.WatchRequest(hash_key=key), metadata=metadata, timeout=30)
        hello = next(stream)
        assert hello.heartbeat and hello.data_version == start and hello.heartbeat_interval_ms == 200
        quiet = next(stream)  # nothing changed: a heartbeat within the interval
        assert quiet.heartbeat and quiet.data_version == start
        version = blacklist(
            gateway, organisation, persons=((person, "李四", PersonRole.LEGAL_REPRESENTATIVE),)
        )
        event = next(e for e in stream if not e.heartbeat)
        assert event.data_version == version and not event.everything
        assert set(event.subject_hashes) == {keyed(key, organisation), keyed(key, person)}
        raw = event.SerializeToString()
        assert organisation.encode() not in raw and person.encode() not in raw
        stream.cancel()

        # Resumed from before the change: the change comes again, then the stream goes on.
        resumed: Any = stub.Watch(
            check_pb2.WatchRequest(after_version=start, hash_key=key), metadata=metadata, timeout=30
        )
        assert next(resumed).data_version == start
        again = next(resumed)
        assert again.data_version == version and keyed(key, organisation) in again.subject_hashes
        resumed.cancel()


def _candidates(person: str, count: int) -> list[str]:
    """``count`` citizen ID numbers of ``person``'s region and birth date, ``person`` among them: what
    an attacker who knows where and when someone was born would try."""
    candidates = []
    for sequence in range(count):
        body = f"{person[:14]}{sequence:03d}"
        candidates.append(body + citizen_id_check_character(body))
    assert person in candidates
    return candidates


def test_watch_is_no_oracle_about_subjects_the_caller_never_checked(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    """The attack of issue 19: subscribe with a chosen key, wait for a blacklisting, test candidate ID
    numbers offline. Without a grant there is no stream; with one, a subject the caller never checked
    is never named (another caller's checks do not count), while its own checked subject is."""
    _, gateway, token = own_gateway
    target = f"127.0.0.1:{gateway.port}"
    admin_token = gateway.admin_token_file.read_text().strip()  # type: ignore[union-attr]
    stranger = provision(target, admin_token, "stranger", grant=False)
    attacker = provision(target, admin_token, "attacker")
    company, own = new_uscc(), new_uscc()
    person = new_citizen_id(dt.date(1985, 3, 17))
    candidates = _candidates(person, 1000)
    key = b"chosen by the attacker"
    audit = gateway.audit
    assert is_audit_log(audit)
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        refused: Any = stub.Watch(check_pb2.WatchRequest(hash_key=key), metadata=auth_metadata(stranger))
        with pytest.raises(grpc.RpcError) as raised:
            next(refused)
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
        refusal = audit.query(kind="watch", caller_id="stranger", limit=10)
        assert [(r.outcome, r.status) for r in refusal] == [("refused", "PERMISSION_DENIED")]

        # The legitimate caller checks the person (so some stream may name it), the attacker only `own`.
        stub.Check(
            check_pb2.CheckRequest(subject=person, matter=FAIL_CLOSED_MATTER),
            metadata=auth_metadata(token),
            timeout=10,
        )
        stub.Check(
            check_pb2.CheckRequest(subject=own, matter=FAIL_CLOSED_MATTER),
            metadata=auth_metadata(attacker),
            timeout=10,
        )
        stream: Any = stub.Watch(check_pb2.WatchRequest(hash_key=key), metadata=auth_metadata(attacker))
        assert next(stream).heartbeat
        listed = blacklist(gateway, company, persons=((person, "王五", PersonRole.LEGAL_REPRESENTATIVE),))
        own_listed = blacklist(gateway, own)
        events = []
        for event in stream:
            events.append(event)
            if event.data_version >= own_listed:
                break
        stream.cancel()
    named = {digest for event in events for digest in event.subject_hashes}
    found = [candidate for candidate in candidates if keyed(key, candidate) in named]
    assert found == []  # nothing to learn about the person or the company
    assert keyed(key, company) not in named
    assert any(event.data_version == listed and not event.subject_hashes for event in events)
    assert named == {keyed(key, own)}  # the attacker's own subject is named: the stream still works
    subscribed = audit.query(kind="watch", caller_id="attacker", limit=10)
    assert [(r.outcome, r.status) for r in subscribed] == [("subscribed", "OK")]


def test_watch_streams_per_caller_are_bounded_by_the_grant(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    _, gateway, _ = own_gateway
    target = f"127.0.0.1:{gateway.port}"
    admin_token = gateway.admin_token_file.read_text().strip()  # type: ignore[union-attr]
    token = provision(target, admin_token, "two-streams", max_watch_streams=2)
    audit = gateway.audit
    assert is_audit_log(audit)
    metadata = auth_metadata(token)
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        open_streams: list[Any] = []
        for _ in range(2):
            stream: Any = stub.Watch(check_pb2.WatchRequest(hash_key=b"k" * 16), metadata=metadata)
            assert next(stream).heartbeat
            open_streams.append(stream)
        third: Any = stub.Watch(check_pb2.WatchRequest(hash_key=b"k" * 16), metadata=metadata)
        with pytest.raises(grpc.RpcError) as raised:
            next(third)
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already holds 2 Watch streams" in (raised.value.details() or "")
        open_streams.pop().cancel()
        # Once a stream has ended, its place is free again.
        assert wait_until(lambda: gateway.watch.subscribers == 1)
        again: Any = stub.Watch(check_pb2.WatchRequest(hash_key=b"k" * 16), metadata=metadata)
        assert next(again).heartbeat
        again.cancel()
        open_streams[0].cancel()
    outcomes = [(r.outcome, r.status) for r in audit.query(kind="watch", caller_id="two-streams", limit=10)]
    assert sorted(outcomes) == sorted([("subscribed", "OK")] * 3 + [("refused", "RESOURCE_EXHAUSTED")])


def test_a_client_refused_its_stream_checks_without_its_cache_and_does_not_hammer(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    _, gateway, _ = own_gateway
    target = f"127.0.0.1:{gateway.port}"
    admin_token = gateway.admin_token_file.read_text().strip()  # type: ignore[union-attr]
    token = provision(target, admin_token, "one-stream", max_watch_streams=1)
    audit = gateway.audit
    assert is_audit_log(audit)

    def refusals() -> int:
        return len(audit.query(kind="watch", caller_id="one-stream", outcome="refused", limit=100))

    subject = new_uscc()
    with (
        Client(target, token=token, cache_size=10) as first,
        Client(target, token=token, cache_size=10) as second,
    ):
        assert first.cache is not None and second.cache is not None
        assert wait_until(lambda: first.cache.alive() or second.cache.alive())  # type: ignore[union-attr]
        assert wait_until(lambda: refusals() >= 1), refusals()
        assert refusals() == 1, refusals()
        refused = second if first.cache.alive() else first
        for _ in range(5):  # answered by the gateway every time, never from a cache it cannot keep fresh
            assert not refused.check(subject, FAIL_CLOSED_MATTER).from_cache
        assert refusals() == 1  # the refused client waits before asking again


def test_a_stream_ends_when_its_callers_grant_is_revoked(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    _, gateway, _ = own_gateway
    target = f"127.0.0.1:{gateway.port}"
    admin_token = gateway.admin_token_file.read_text().strip()  # type: ignore[union-attr]
    token = provision(target, admin_token, "loses-grant")
    audit = gateway.audit
    assert is_audit_log(audit)
    admin, admin_channel = admin_stub(target)
    with grpc.insecure_channel(target) as channel, admin_channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        stream: Any = stub.Watch(check_pb2.WatchRequest(hash_key=b"k" * 16), metadata=auth_metadata(token))
        assert next(stream).heartbeat
        admin.RevokeGrant(
            admin_pb2.CallerRef(caller_id="loses-grant"), metadata=auth_metadata(admin_token), timeout=10
        )
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:  # heartbeats until the gateway sees the revocation
                pass
    assert ended.value.code() is grpc.StatusCode.PERMISSION_DENIED
    records = audit.query(kind="watch", caller_id="loses-grant", limit=10)
    assert [(r.outcome, r.status) for r in records] == [
        ("subscribed", "OK"),
        ("refused", "PERMISSION_DENIED"),
    ]


def test_the_default_stream_bound_refuses_a_flood_of_streams(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    _, gateway, token = own_gateway
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        accepted: list[Any] = []
        codes = []
        # Opened all at once (each call starts when it is made), then read.
        streams: list[Any] = [
            stub.Watch(check_pb2.WatchRequest(hash_key=b"k" * 16), metadata=auth_metadata(token))
            for _ in range(DEFAULT_WATCH_STREAMS + 3)
        ]
        for stream in streams:
            try:
                next(stream)
                accepted.append(stream)
            except grpc.RpcError as error:
                codes.append(error.code())
        for stream in accepted:
            stream.cancel()
    assert len(accepted) == DEFAULT_WATCH_STREAMS
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3


@pytest.mark.parametrize(
    ("metadata", "key", "code"),
    [
        ((), b"k" * 32, grpc.StatusCode.UNAUTHENTICATED),
        (None, b"short", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_watch_refuses_strangers_and_weak_keys(
    target: str, token: str, gateway: Gateway, metadata: Any, key: bytes, code: grpc.StatusCode
) -> None:
    audit = gateway.audit
    assert is_audit_log(audit)

    def refusals() -> int:
        records = audit.query(kind="watch", outcome="refused", limit=10_000)
        return sum(record.status == code.name for record in records)

    refused_before = refusals()
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        stream: Any = stub.Watch(
            check_pb2.WatchRequest(hash_key=key),
            metadata=auth_metadata(token) if metadata is None else metadata,
            timeout=10,
        )
        with pytest.raises(grpc.RpcError) as raised:
            next(stream)
    assert raised.value.code() is code
    assert raised.value.details()  # names what was wrong
    assert refusals() == refused_before + 1  # the refusal is audited, with its status


# -- the SDK's cache ---------------------------------------------------------------------------


def test_sdk_cache_serves_repeats_and_drops_a_blacklisted_subject_through_the_stream(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    _, gateway, token = own_gateway
    subject = new_uscc()
    with Client(f"127.0.0.1:{gateway.port}", token=token, cache_size=100) as client:
        cache = client.cache
        assert cache is not None
        assert wait_until(cache.alive)
        first = client.check(subject, FAIL_CLOSED_MATTER)
        assert first.outcome is Outcome.NO_RECORD and not first.from_cache
        cached = client.check(subject, FAIL_CLOSED_MATTER)
        assert cached.from_cache and cached.outcome is Outcome.NO_RECORD  # negative answers are cached
        assert cached.as_of == first.checked_at and cached.receipt == first.receipt
        # Another matter, purpose or subject is another key.
        assert not client.check(subject, SERVE_STALE_MATTER).from_cache

        blacklist(gateway, subject)
        assert len(cache) == 2
        # The stream drops the subject's answers, for every matter.
        assert wait_until(lambda: len(cache) == 0)
        fresh = client.check(subject, FAIL_CLOSED_MATTER)
        assert not fresh.from_cache and fresh.outcome is Outcome.RESTRICTIONS


def test_after_a_gateway_restart_answers_cached_before_are_not_served_fresh(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    """A restarted gateway (like another replica) knows nothing of the checks made before: its stream
    would not name their subjects, so the cache must not serve those answers as fresh any more."""
    thread, gateway, token = own_gateway
    subject, port = new_uscc(), gateway.port
    with Client(f"127.0.0.1:{port}", token=token, cache_size=100) as client:
        cache = client.cache
        assert cache is not None
        assert wait_until(cache.alive)
        client.check(subject, FAIL_CLOSED_MATTER)
        assert client.check(subject, FAIL_CLOSED_MATTER).from_cache
        thread.stop()
        restarted = GatewayThread(replace(thread.config, listen=f"127.0.0.1:{port}"))
        again = restarted.start()
        try:
            assert again.watch.instance != gateway.watch.instance
            assert wait_until(cache.alive, timeout=15)  # the stream is back, from the new process
            blacklist(again, subject)
            after = client.check(subject, FAIL_CLOSED_MATTER)
            assert not after.from_cache and after.outcome is Outcome.RESTRICTIONS
            # Checked through the new process, the answer is cached, and its stream drops it again.
            assert client.check(subject, FAIL_CLOSED_MATTER).from_cache
            assert len(cache) == 1
            blacklist(again, subject)
            assert wait_until(lambda: len(cache) == 0)
        finally:
            restarted.stop()


def test_async_sdk_cache_follows_the_stream_too(own_gateway: tuple[GatewayThread, Gateway, str]) -> None:
    _, gateway, token = own_gateway
    subject = new_uscc()

    async def scenario() -> tuple[CheckResult, CheckResult, CheckResult]:
        async with AsyncClient(f"127.0.0.1:{gateway.port}", token=token, cache_size=100) as client:
            assert client.cache is not None
            first = await client.check(subject, FAIL_CLOSED_MATTER)
            for _ in range(250):
                if client.cache.alive():
                    break
                await asyncio.sleep(0.02)
            await client.check(subject, FAIL_CLOSED_MATTER)  # stored now that the stream is up
            cached = await client.check(subject, FAIL_CLOSED_MATTER)
            await asyncio.get_running_loop().run_in_executor(None, blacklist, gateway, subject)
            for _ in range(250):
                if len(client.cache) == 0:
                    break
                await asyncio.sleep(0.02)
            return first, cached, await client.check(subject, FAIL_CLOSED_MATTER)

    first, cached, after = asyncio.run(scenario())
    assert not first.from_cache and cached.from_cache
    assert after.outcome is Outcome.RESTRICTIONS and not after.from_cache


def test_with_the_stream_cut_fail_modes_decide_and_tolerance_bounds_stale_answers(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    thread, gateway, token = own_gateway
    subject = new_uscc()
    client = Client(
        f"127.0.0.1:{gateway.port}", token=token, cache_size=100, timeout=1.0, retry=RetryPolicy(attempts=2)
    )
    try:
        assert client.cache is not None
        assert wait_until(client.cache.alive)
        client.check(subject, FAIL_CLOSED_MATTER)
        stale_matter = client.check(subject, SERVE_STALE_MATTER)
        assert client.check(subject, SERVE_STALE_MATTER).from_cache

        thread.stop()  # the gateway and its stream are gone
        assert wait_until(lambda: not client.cache.alive())  # type: ignore[union-attr]
        # A must-check matter fails closed, although an answer is cached.
        with pytest.raises(CheckUnavailable):
            client.check(subject, FAIL_CLOSED_MATTER)
        # A serve-stale matter gets its cached answer, marked stale.
        stale = client.check(subject, SERVE_STALE_MATTER)
        assert stale.stale and stale.from_cache and stale.outcome is stale_matter.outcome
        # Past the matter's tolerance (86,400 s) nothing is served.
        real_clock = client.cache.clock
        client.cache.clock = lambda: real_clock() + 86_401
        with pytest.raises(CheckUnavailable):
            client.check(subject, SERVE_STALE_MATTER)
    finally:
        client.close()


def test_a_cached_answer_never_outlives_its_tolerance_even_with_the_stream_up(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    _, gateway, token = own_gateway
    subject = new_uscc()
    with Client(f"127.0.0.1:{gateway.port}", token=token, cache_size=10) as client:
        assert client.cache is not None
        assert wait_until(client.cache.alive)
        client.check(subject, FAIL_CLOSED_MATTER)
        assert client.check(subject, FAIL_CLOSED_MATTER).from_cache
        offset = [0.0]
        real_clock = client.cache.clock
        client.cache.clock = lambda: real_clock() + offset[0]
        offset[0] = 3_601  # MOF-0001 allows 3,600 s
        client.cache.apply(check_pb2.WatchEvent(heartbeat=True, heartbeat_interval_ms=200))  # stream alive
        assert not client.check(subject, FAIL_CLOSED_MATTER).from_cache


# -- retries ---------------------------------------------------------------------------------


def test_only_unavailable_is_retried_and_only_within_the_deadline() -> None:
    policy = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02)
    unavailable = GatewayUnreachable("down", code=grpc.StatusCode.UNAVAILABLE)
    denied = PermissionDenied("no", code=grpc.StatusCode.PERMISSION_DENIED)
    attempts = Attempts(policy, timeout=10)
    attempts.timeout()
    assert attempts.backoff(denied) is None
    first = attempts.backoff(unavailable)
    assert first is not None and 0 < first <= 0.01
    attempts.timeout()
    attempts.timeout()
    assert attempts.backoff(unavailable) is None  # three attempts made
    short = Attempts(RetryPolicy(initial_backoff=0.5, max_backoff=0.5), timeout=0.1)
    short.timeout()
    assert short.backoff(unavailable) is None  # the wait would pass the deadline


def test_an_unreachable_gateway_fails_closed_within_the_deadline(tmp_path: Path) -> None:
    with Client("127.0.0.1:9", timeout=0.5, retry=RetryPolicy(attempts=3, initial_backoff=0.05)) as client:
        started = time.monotonic()
        with pytest.raises(CheckUnavailable):
            client.check(new_uscc(), FAIL_CLOSED_MATTER)
    assert time.monotonic() - started < 5  # bounded by the deadline, not hanging


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_count_checks_and_show_caches_audit_and_subscribers(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    _, gateway, token = own_gateway
    assert gateway.metrics_port is not None
    subject = new_uscc()
    with Client(f"127.0.0.1:{gateway.port}", token=token, cache_size=10) as client:
        assert client.cache is not None
        assert wait_until(client.cache.alive)
        client.check(subject, FAIL_CLOSED_MATTER)
        client.check(new_uscc(), "MOF-0001")
        client.batch_check([subject, "914403001922038217"], FAIL_CLOSED_MATTER)
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"
    }
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    # Counts that only grow are counters (exposed as *_total), levels are gauges; no *_created series.
    assert types["mustcheck_checks_total"] == "counter"
    assert (
        types["mustcheck_lookup_cache_hits_total"]
        == types["mustcheck_lookup_cache_misses_total"]
        == "counter"
    )
    assert (
        types["mustcheck_watch_subscribers"] == "gauge" and types["mustcheck_lookup_cache_entries"] == "gauge"
    )
    assert types["mustcheck_request_latency_seconds"] == "histogram"
    assert not [name for name in lines if "_created" in name]
    assert lines["process_cpu_seconds_total"] > 0 and lines["process_resident_memory_bytes"] > 0
    ok = 'mustcheck_checks_total{caller="fresh",kind="check",outcome="no_record",status="OK"}'
    assert lines[ok] == 2
    assert (
        lines[
            'mustcheck_checks_total{caller="fresh",kind="batch_item",outcome="invalid_input",'
            'status="INVALID_ARGUMENT"}'
        ]
        == 1
    )
    assert lines['mustcheck_request_latency_seconds_count{method="check"}'] == 2
    assert lines["mustcheck_watch_subscribers"] == 1
    assert lines["mustcheck_lookup_cache_hits_total"] + lines["mustcheck_lookup_cache_misses_total"] >= 3
    assert "mustcheck_lookup_cache_hit_ratio" in lines
    assert lines["mustcheck_audit_commit_seconds_count"] >= 3
    assert "mustcheck_audit_queue_depth" in lines
    assert subject not in text


def test_sdk_cache_and_watch_hashes_use_the_canonical_subject(
    own_gateway: tuple[GatewayThread, Gateway, str],
) -> None:
    """R1: a full-width form is the same subject to the cache, and the stream's hash of the listed (ASCII)
    code drops its cached answer."""
    _, gateway, token = own_gateway
    subject = new_uscc()
    wide = "\u3000" + "".join(chr(ord(c) + 0xFEE0) for c in subject.lower())
    with Client(f"127.0.0.1:{gateway.port}", token=token, cache_size=100) as client:
        cache = client.cache
        assert cache is not None
        assert wait_until(cache.alive)
        first = client.check(wide, FAIL_CLOSED_MATTER)
        assert first.outcome is Outcome.NO_RECORD and first.subject == subject
        assert client.check(subject, FAIL_CLOSED_MATTER).from_cache  # one subject, one cache entry
        blacklist(gateway, subject)
        assert wait_until(lambda: len(cache) == 0)
        assert client.check(wide, FAIL_CLOSED_MATTER).outcome is Outcome.RESTRICTIONS
