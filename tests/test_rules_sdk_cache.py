"""R12 in the SDK's cache, on a clock the test moves: when a cached answer is served fresh, when stale,
when never; and the client's fail modes (a stale answer only for a serve-stale matter, and only when the
gateway cannot be reached). The end-to-end behaviour is in tests/test_freshness.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Hashable

import pytest

from mustcheck import AsyncClient, CheckUnavailable, PermissionDenied
from mustcheck._cache import AnswerCache
from mustcheck._client import _BaseClient
from mustcheck._convert import check_result
from mustcheck._generated.v1 import check_pb2 as pb

INSTANCE = "gateway-1"
SUBJECT = "91110108551385082Q"


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def response(
    *,
    tolerance: int = 60,
    serve_stale: bool = False,
    version: int = 7,
    instance: str = INSTANCE,
    subject: str = SUBJECT,
) -> pb.CheckResponse:
    return pb.CheckResponse(
        subject=subject,
        subject_kind=pb.SUBJECT_KIND_ORGANIZATION,
        outcome=pb.OUTCOME_NO_RECORD,
        matter="MOF-0001",
        freshness_tolerance_s=tolerance,
        fail_mode=pb.FAIL_MODE_SERVE_STALE if serve_stale else pb.FAIL_MODE_CLOSED,
        data_version=version,
        gateway_instance=instance,
    )


def hashed(cache: AnswerCache, subject: str) -> bytes:
    return hmac.new(cache.hash_key, subject.encode(), hashlib.sha256).digest()


def joined(clock: Clock, *, heartbeat_ms: int = 2000, version: int = 7, max_entries: int = 8) -> AnswerCache:
    cache = AnswerCache(max_entries, clock=clock)
    cache.apply(
        pb.WatchEvent(heartbeat_interval_ms=heartbeat_ms, data_version=version, gateway_instance=INSTANCE)
    )
    return cache


def remember(cache: AnswerCache, key: Hashable, message: pb.CheckResponse) -> None:
    cache.remember(key, message.subject, message, check_result(message))


def test_a_cache_needs_room_for_one_answer() -> None:
    with pytest.raises(ValueError, match="at least one answer, got 0"):
        AnswerCache(0)
    assert len(AnswerCache(1)) == 0


def test_an_answer_is_fresh_until_its_tolerance_and_only_while_the_stream_is_alive() -> None:
    clock = Clock()
    cache = joined(clock)  # heartbeat 2 s: alive for 3 s after the last message
    remember(cache, "k", response(tolerance=60))
    served = cache.fresh("k")
    assert served is not None and served.from_cache and not served.stale
    assert (cache.hits, cache.misses) == (1, 0)
    clock.now += 3.0
    assert cache.fresh("k") is not None and cache.alive()  # exactly 1.5 heartbeats: still alive
    clock.now += 0.001
    assert cache.fresh("k") is None and not cache.alive()
    assert cache.misses == 1
    cache.apply(pb.WatchEvent(gateway_instance=INSTANCE))  # a heartbeat keeps the interval it had
    clock.now = 500.0 + 60.0
    cache.apply(pb.WatchEvent(gateway_instance=INSTANCE))
    assert cache.fresh("k") is not None  # exactly at the tolerance
    clock.now += 0.001
    cache.apply(pb.WatchEvent(gateway_instance=INSTANCE))
    assert cache.fresh("k") is None  # older than the tolerance: never served fresh
    assert cache.fresh("other") is None


def test_a_lost_stream_stops_fresh_answers_at_once() -> None:
    clock = Clock()
    cache = joined(clock)
    remember(cache, "k", response())
    cache.stream_lost()
    assert cache.fresh("k") is None and not cache.alive()


def test_an_answer_is_stored_only_from_the_streams_gateway_and_version() -> None:
    clock = Clock()
    cache = joined(clock, version=7)
    remember(cache, "old", response(version=6))  # the stream moved past it: a change may be missed
    remember(cache, "same", response(version=7))
    remember(cache, "other-gateway", response(instance="gateway-2"))
    remember(cache, "no-tolerance", response(tolerance=0))
    remember(cache, "negative-tolerance", response(tolerance=-5))  # nonsense: never stored either
    assert len(cache) == 1 and cache.fresh("same") is not None
    cache.stream_lost()
    remember(cache, "while-down", response())
    assert len(cache) == 1


def test_answers_of_another_gateway_process_are_not_served_after_a_reconnect() -> None:
    clock = Clock()
    cache = joined(clock)
    remember(cache, "k", response())
    cache.apply(pb.WatchEvent(gateway_instance="gateway-2"))
    assert cache.fresh("k") is None
    cache.apply(pb.WatchEvent(gateway_instance=INSTANCE))
    remember(cache, "k", response())
    cache.apply(pb.WatchEvent(gateway_instance="gateway-0"))  # a name sorting before the answer's
    assert cache.fresh("k") is None


def test_a_watch_event_drops_the_answers_of_the_subjects_it_names() -> None:
    clock = Clock()
    cache = joined(clock)
    other = "91440300192317458F"
    remember(cache, ("a", 1), response())
    remember(cache, ("a", 2), response())
    remember(cache, ("b", 1), response(subject=other))
    cache.apply(
        pb.WatchEvent(subject_hashes=[hashed(cache, SUBJECT)], data_version=8, gateway_instance=INSTANCE)
    )
    assert cache.fresh(("a", 1)) is None and cache.fresh(("a", 2)) is None
    assert cache.fresh(("b", 1)) is not None
    assert cache.stream_version == 8
    cache.apply(pb.WatchEvent(data_version=3, gateway_instance=INSTANCE))
    assert cache.stream_version == 8  # never goes back
    cache.apply(pb.WatchEvent(everything=True, gateway_instance=INSTANCE))
    assert len(cache) == 0


def test_the_watch_request_resumes_after_the_first_event() -> None:
    cache = AnswerCache(2, clock=Clock())
    first = cache.watch_request()
    assert (
        not first.HasField("after_version")
        if first.DESCRIPTOR.fields_by_name["after_version"].has_presence
        else first.after_version == 0
    )
    assert first.hash_key == cache.hash_key and len(cache.hash_key) == 32
    cache.apply(pb.WatchEvent(data_version=0, gateway_instance=INSTANCE))
    cache.apply(pb.WatchEvent(data_version=12, gateway_instance=INSTANCE))
    assert cache.watch_request().after_version == 12


def test_eviction_keeps_the_subject_index_in_step() -> None:
    clock = Clock()
    cache = joined(clock, max_entries=1)
    remember(cache, "first", response())
    remember(cache, "second", response())  # evicts "first"
    assert len(cache) == 1 and cache.fresh("second") is not None
    cache.apply(pb.WatchEvent(subject_hashes=[hashed(cache, SUBJECT)], gateway_instance=INSTANCE))
    assert len(cache) == 0


def test_a_stale_answer_only_for_a_serve_stale_matter_within_its_tolerance() -> None:
    clock = Clock()
    cache = joined(clock)
    remember(cache, "stale-ok", response(serve_stale=True, tolerance=30))
    remember(cache, "closed", response(serve_stale=False, tolerance=30))
    cache.stream_lost()
    served = cache.stale("stale-ok")
    assert served is not None and served.stale and served.from_cache
    assert cache.stale("closed") is None and cache.stale("missing") is None
    clock.now += 30
    assert cache.stale("stale-ok") is not None
    clock.now += 0.001
    assert cache.stale("stale-ok") is None


def test_the_client_serves_stale_only_when_the_gateway_cannot_answer() -> None:
    """The fail modes: unreachable → the stale answer of a serve-stale matter, else the error itself;
    any other error (a refusal) is never covered by the cache."""
    client = _BaseClient("127.0.0.1:9", cache_size=4)
    assert client.cache is not None
    clock = Clock()
    client.cache.clock = clock
    client.cache.apply(pb.WatchEvent(heartbeat_interval_ms=1000, gateway_instance=INSTANCE, data_version=7))
    key = client._cache_key(f" {SUBJECT.lower()} ", "MOF-0001", "审批", "", None)
    assert key == client._cache_key(SUBJECT, "MOF-0001", "审批", "", None)  # the canonical subject
    assert key != client._cache_key(SUBJECT, "MOF-0002", "审批", "", None)
    assert key != client._cache_key(SUBJECT, "MOF-0001", "other", "", None)
    assert key != client._cache_key(SUBJECT, "MOF-0001", "审批", "ref", None)
    remembered = client._remember(key, f" {SUBJECT} ", response(serve_stale=True))
    assert not remembered.from_cache and len(client.cache) == 1
    unavailable = CheckUnavailable("down")
    assert client._stale_or_raise(key, unavailable).stale
    refused = PermissionDenied("no")
    with pytest.raises(PermissionDenied):
        client._stale_or_raise(key, refused)
    with pytest.raises(CheckUnavailable):
        client._stale_or_raise(None, unavailable)
    with pytest.raises(CheckUnavailable):
        client._stale_or_raise(("never", "cached"), unavailable)
    uncached = _BaseClient("127.0.0.1:9")
    with pytest.raises(CheckUnavailable):
        uncached._stale_or_raise(key, unavailable)


def test_the_async_client_serves_stale_only_for_plain_checks_when_unreachable() -> None:
    async def scenario() -> None:
        async with AsyncClient("127.0.0.1:9", cache_size=4, timeout=0.5) as client:
            assert client.cache is not None
            client.cache.apply(pb.WatchEvent(heartbeat_interval_ms=60_000, gateway_instance=INSTANCE))
            key = client._cache_key(SUBJECT, "MOF-0001", "", "", None)
            client._remember(key, SUBJECT, response(serve_stale=True))
            assert (await client.check(SUBJECT, "MOF-0001")).from_cache  # fresh while the stream lives
            client.cache.stream_lost()
            served = await client.check(SUBJECT, "MOF-0001")
            assert served.stale and served.from_cache
            with pytest.raises(CheckUnavailable):  # a replay is never answered from the cache
                await client.check(SUBJECT, "MOF-0001", as_of_version=5)
        async with AsyncClient("127.0.0.1:9", timeout=0.5) as uncached:
            with pytest.raises(CheckUnavailable):
                await uncached.check(SUBJECT, "MOF-0001")

    asyncio.run(scenario())


def test_an_answer_from_any_other_gateway_process_is_not_stored() -> None:
    cache = joined(Clock())
    cache.apply(pb.WatchEvent(gateway_instance="gateway-5"))
    for other in ("gateway-0", "gateway-9", ""):
        remember(cache, other, response(instance=other))
    assert len(cache) == 0


def test_an_event_without_a_heartbeat_interval_keeps_the_one_given() -> None:
    clock = Clock()
    cache = joined(clock, heartbeat_ms=2000)
    remember(cache, "k", response())
    cache.apply(pb.WatchEvent(gateway_instance=INSTANCE))
    clock.now += 2.5
    assert cache.alive() and cache.fresh("k") is not None
    cache.apply(pb.WatchEvent(heartbeat_interval_ms=-1000, gateway_instance=INSTANCE))  # a nonsense interval
    clock.now += 2.5
    assert cache.alive() and cache.fresh("k") is not None


def test_evicting_one_answer_keeps_the_subject_s_other_answers_droppable() -> None:
    clock = Clock()
    cache = joined(clock, max_entries=2)
    remember(cache, ("a", 1), response())
    remember(cache, ("a", 2), response())
    remember(cache, ("b", 1), response(subject="91440300192317458F"))  # evicts ("a", 1)
    assert cache.fresh(("a", 2)) is not None
    cache.apply(pb.WatchEvent(subject_hashes=[hashed(cache, SUBJECT)], gateway_instance=INSTANCE))
    assert cache.fresh(("a", 2)) is None  # still dropped by the subject's event
    cache.apply(pb.WatchEvent(everything=True, gateway_instance=INSTANCE))
    remember(cache, ("c", 1), response())
    remember(cache, ("c", 2), response())
    remember(cache, ("c", 3), response())  # evicts ("c", 1): the index must not keep it
    assert cache._by_hash[hashed(cache, SUBJECT)] == {("c", 2), ("c", 3)}


def test_a_stream_that_never_names_its_heartbeat_is_taken_to_beat_each_second() -> None:
    """Until an event names the interval, the stream is alive for 1.5 × 1 s after its last message."""
    clock = Clock()
    cache = AnswerCache(4, clock=clock)
    assert not cache.alive()  # no message yet
    cache.apply(pb.WatchEvent(data_version=7, gateway_instance=INSTANCE))  # no heartbeat_interval_ms
    remember(cache, "k", response())
    clock.now += 1.5
    assert cache.alive() and cache.fresh("k") is not None
    clock.now += 0.001
    assert not cache.alive() and cache.fresh("k") is None


def test_the_tolerance_counts_from_the_answer_whatever_the_clock_reads() -> None:
    """A monotonic clock may start small: the age is now − fetched, not any other arithmetic."""
    clock = Clock()
    clock.now = 10.0
    cache = joined(clock, heartbeat_ms=3_600_000)
    remember(cache, "k", response(tolerance=60, serve_stale=True))
    clock.now = 70.0  # exactly at the tolerance
    assert cache.fresh("k") is not None and cache.stale("k") is not None
    clock.now = 75.0  # 65 s old: past it (75 is 5 more than a multiple of 10)
    assert cache.fresh("k") is None and cache.stale("k") is None


def test_a_fail_mode_this_sdk_does_not_know_fails_closed() -> None:
    """Only FAIL_MODE_SERVE_STALE may be served stale; a mode added by a newer gateway may not."""
    clock = Clock()
    cache = joined(clock)
    for key, mode in (
        ("closed", pb.FAIL_MODE_CLOSED),
        ("unspecified", pb.FAIL_MODE_UNSPECIFIED),
        ("newer", pb.FailMode.ValueType(3)),  # a value this SDK has no name for
    ):
        message = response()
        message.fail_mode = mode
        remember(cache, key, message)
    remember(cache, "stale-ok", response(serve_stale=True))
    assert len(cache) == 4
    cache.stream_lost()
    assert cache.stale("stale-ok") is not None
    assert [cache.stale(key) for key in ("closed", "unspecified", "newer")] == [None, None, None]


def test_the_resume_version_is_never_negative() -> None:
    """The gateway refuses a negative ``after_version``: a new cache stands at version 0, and a nonsense
    negative version from a stream never takes it below that."""
    cache = AnswerCache(2, clock=Clock())
    assert cache.stream_version == 0
    cache.apply(pb.WatchEvent(data_version=-3, gateway_instance=INSTANCE))
    assert cache.stream_version == 0 and cache.watch_request().after_version == 0


def test_the_least_tolerance_and_heartbeat_count() -> None:
    """A tolerance of one second is stored and served; a heartbeat of one millisecond is taken."""
    clock = Clock()
    cache = joined(clock, heartbeat_ms=2000)
    remember(cache, "k", response(tolerance=1))
    assert len(cache) == 1 and cache.fresh("k") is not None
    clock.now += 1.0
    cache.apply(pb.WatchEvent(heartbeat_interval_ms=1, gateway_instance=INSTANCE))
    assert cache.fresh("k") is not None  # exactly at the tolerance
    clock.now += 0.002  # past 1.5 heartbeats of 1 ms (and past the tolerance)
    assert not cache.alive()
