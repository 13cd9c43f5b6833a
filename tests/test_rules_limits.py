"""Rate limits, person quotas and the failed-authentication throttle, on a clock the test moves.

The clock is a plain number the test sets (the limiters take a ``monotonic`` function); every expected
wait is worked out by hand from the token-bucket rule: tokens = min(burst, tokens + elapsed × rate).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from mustcheck_gateway.auth.peers import FailedAuthLimit, PeerThrottle, peer_address
from mustcheck_gateway.auth.ratelimit import PersonQuota, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_asks_to_wait_for_the_missing_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.take("a", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 2.0, 3) == pytest.approx(0.5)  # one token missing at 2/s
    assert limiter.take("a", 2.0, 3, count=3) == pytest.approx(1.5)
    clock.now += 0.5  # one token back
    assert limiter.take("a", 2.0, 3) == 0.0
    assert limiter.take("a", 2.0, 3) == pytest.approx(0.5)
    clock.now += 100  # refills to the burst, never beyond
    assert limiter.take("a", 2.0, 3, count=3) == 0.0
    assert limiter.take("a", 2.0, 3) == pytest.approx(0.5)
    assert limiter.take("b", 2.0, 3, count=3) == 0.0  # each caller has its own bucket


def test_a_take_of_exactly_the_tokens_left_is_allowed() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.take("a", 1.0, 4, count=4) == 0.0
    clock.now += 2.0
    assert limiter.take("a", 1.0, 4, count=2) == 0.0
    assert limiter.take("a", 1.0, 4, count=1) == pytest.approx(1.0)


def test_a_changed_grant_starts_a_full_bucket_and_a_zero_rate_never_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.take("a", 1.0, 2, count=2) == 0.0
    assert limiter.take("a", 1.0, 5, count=5) == 0.0  # burst changed
    assert limiter.take("a", 3.0, 5, count=5) == 0.0  # rate changed
    assert limiter.take("a", 0.0, 1) == 0.0
    clock.now += 10_000
    assert limiter.take("a", 0.0, 1) == float("inf")
    assert limiter.take("a", 0.0, 2, count=3) == float("inf")


def test_person_quota_counts_per_caller_and_china_standard_day() -> None:
    quota = PersonQuota()
    # 15:59:59 UTC is 23:59:59 in Beijing; 16:00 UTC is the next day there.
    evening = dt.datetime(2026, 6, 1, 15, 59, 59, tzinfo=dt.UTC)
    midnight = dt.datetime(2026, 6, 1, 16, 0, 0, tzinfo=dt.UTC)
    assert PersonQuota.day_of(evening) == dt.date(2026, 6, 1)
    assert PersonQuota.day_of(midnight) == dt.date(2026, 6, 2)
    assert [quota.take("a", evening, 2) for _ in range(3)] == [True, True, False]
    assert quota.used("a", evening) == 2
    assert quota.take("a", midnight, 2) and quota.used("a", midnight) == 1
    assert quota.take("b", evening, 2)
    assert not quota.take("c", evening, 0)  # a zero quota allows no person lookup
    quota.seed("d", dt.date(2026, 6, 1), 5)
    quota.seed("d", dt.date(2026, 6, 1), 3)  # never lowers what was counted
    assert quota.used("d", evening) == 5 and not quota.take("d", evening, 5) and quota.take("d", evening, 6)


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:53412", "127.0.0.1"),
        ("ipv6:[::1]:53412", "::/64"),  # an IPv6 peer is its /64: one host holds a whole /64
        ("ipv6:[2001:db8::7]:443", "2001:db8::/64"),
        ("ipv4:10.0.0.1", "10.0.0.1"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
        ("ipv4:", "ipv4:"),
        ("", ""),
    ],
)
def test_the_peer_address_drops_the_port(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_a_peer_is_throttled_after_its_burst_with_one_alert_and_aggregated_refusals() -> None:
    clock = Clock()
    throttle = PeerThrottle(FailedAuthLimit(burst=3, per_second=0.5, window_s=10.0), monotonic=clock)
    alerts: list[int] = []
    throttle.on_alert = lambda: alerts.append(1)
    assert [throttle.failed("p", "token.unknown") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert throttle.due() == []
    wait = throttle.failed("p", "token.unknown", items=4)
    assert wait == pytest.approx(6.0)  # 3 tokens missing at 0.5/s
    assert alerts == [1]
    (alert,) = throttle.due()
    assert alert.kind == "alert" and alert.detail["peer"] == "p" and alert.detail["burst"] == 3
    assert throttle.failed("p", "token.expired", items=0) == pytest.approx(6.0)
    assert alerts == [1]  # one alert per episode
    assert throttle.failed("q", "token.unknown") == 0.0  # another peer is not throttled
    clock.now += 10.0  # the window closes: one aggregate record for both refusals
    (aggregate,) = throttle.due()
    assert aggregate.kind == "refused" and aggregate.outcome == "throttled"
    assert aggregate.detail["requests"] == 2 and aggregate.detail["items"] == 5
    assert aggregate.detail["reasons"] == {"token.expired": 1, "token.unknown": 1}


def test_the_throttle_lifts_only_when_the_bucket_is_full_again() -> None:
    clock = Clock()
    throttle = PeerThrottle(FailedAuthLimit(burst=2, per_second=1.0, window_s=60.0), monotonic=clock)
    assert throttle.failed("p", "r") == 0.0 and throttle.failed("p", "r") == 0.0
    assert throttle.failed("p", "r") == pytest.approx(2.0)
    clock.now += 1.0  # one token back, still throttled: and a failure now starts the quiet period again
    assert throttle.failed("p", "r") == pytest.approx(2.0)
    clock.now += 1.5  # not quiet long enough since the last failure
    assert throttle.failed("p", "r") == pytest.approx(2.0)
    clock.now += 2.0  # quiet for a whole allowance's time: a new episode
    assert throttle.failed("p", "r") == 0.0
    assert len([e for e in throttle.due(everything=True) if e.kind == "alert"]) == 1


def test_everything_closes_open_windows_and_requeued_records_come_first() -> None:
    clock = Clock()
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=1.0, window_s=60.0), monotonic=clock)
    throttle.failed("p", "r")
    throttle.failed("p", "r")
    first = throttle.due()
    assert [e.kind for e in first] == ["alert"]
    assert throttle.due() == []  # the window is still open
    throttle.requeue(first)
    assert [e.kind for e in throttle.due(everything=True)] == ["alert", "refused"]
    assert throttle.due(everything=True) == []


def test_a_zero_rate_waits_an_hour() -> None:
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=0.0), monotonic=Clock())
    assert throttle.failed("p", "r") == 0.0
    assert throttle.failed("p", "r") == 3600.0


def test_the_least_recent_peer_is_evicted_with_its_aggregate() -> None:
    clock = Clock()
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=1.0), monotonic=clock, max_peers=2)
    throttle.failed("a", "r")
    throttle.failed("a", "r")  # a is throttled, its window open
    assert [e.kind for e in throttle.due()] == ["alert"]
    throttle.failed("b", "r")
    throttle.failed("a", "r")  # a is used again: b is now the least recent
    throttle.failed("c", "r")  # evicts b (no window: nothing to write)
    assert throttle.due() == []
    throttle.failed("d", "r")  # evicts a, whose open window is written
    (aggregate,) = throttle.due()
    assert aggregate.detail["peer"] == "a" and aggregate.detail["requests"] == 2


def test_a_large_burst_keeps_its_bucket() -> None:
    limiter = RateLimiter(Clock())
    assert limiter.take("a", 1.0, int("1000"), count=1000) == 0.0  # a burst no small-int cache holds
    assert limiter.take("a", 1.0, int("1000")) == pytest.approx(1.0)


def test_a_quota_already_exceeded_stays_exceeded() -> None:
    quota = PersonQuota()
    at = dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)
    quota.seed("a", PersonQuota.day_of(at), 5)  # counted by another gateway, before the quota was lowered
    assert not quota.take("a", at, 3)


def test_a_window_closes_after_window_s_whatever_the_clock_reads() -> None:
    clock = Clock()
    clock.now = 5.0  # a monotonic clock may start small
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=1.0, window_s=10.0), monotonic=clock)
    throttle.failed("p", "r")
    throttle.failed("p", "r")
    assert [e.kind for e in throttle.due()] == ["alert"]
    clock.now = 15.0
    assert [e.kind for e in throttle.due()] == ["refused"]


def test_a_throttled_peer_waits_at_least_a_second_and_the_defaults_are_documented() -> None:
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=4.0), monotonic=Clock())
    assert throttle.failed("p", "r") == 0.0
    assert throttle.failed("p", "r") == 1.0  # a quarter of a second's wait is told as one second
    limit = FailedAuthLimit()
    assert (limit.burst, limit.per_second, limit.window_s) == (50, 2.0, 10.0)


def test_a_wait_counts_the_tokens_left_and_a_lowered_rate_starts_a_full_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.take("a", 2.0, 3, count=3) == 0.0
    clock.now += 0.5  # one token back
    assert limiter.take("a", 2.0, 3, count=3) == pytest.approx(1.0)  # two missing at 2/s
    assert limiter.take("a", 1.0, 3, count=3) == 0.0  # the rate lowered, the burst the same: a new bucket


def test_requeued_records_go_before_those_already_due() -> None:
    clock = Clock()
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=1.0, window_s=60.0), monotonic=clock)
    throttle.failed("p", "r")
    throttle.failed("p", "r")
    first = throttle.due()
    throttle.failed("q", "r")
    throttle.failed("q", "r")  # q's alert is due now, not yet taken
    throttle.failed("s", "r")
    throttle.failed("s", "r")  # and s's
    throttle.requeue(first)
    assert [(e.kind, e.detail["peer"]) for e in throttle.due()] == [
        ("alert", "p"),
        ("alert", "q"),
        ("alert", "s"),
    ]


def test_an_equal_rate_read_afresh_keeps_its_bucket() -> None:
    """A grant read again (another float object of the same value) is the same grant: same bucket."""
    limiter = RateLimiter(Clock())
    assert limiter.take("a", float("2.5"), 3, count=3) == 0.0
    assert limiter.take("a", float("2.5"), 3) == pytest.approx(0.4)  # one token missing at 2.5/s


def test_a_failure_after_the_window_closes_writes_that_window_and_opens_the_next() -> None:
    """A throttled peer's failure at or past window_s closes the open window at once (its aggregate due)
    and counts itself in a new one; on a clock that starts small."""
    clock = Clock()
    clock.now = 5.0
    throttle = PeerThrottle(FailedAuthLimit(burst=2, per_second=0.01, window_s=10.0), monotonic=clock)
    assert [throttle.failed("p", "r") for _ in range(2)] == [0.0, 0.0]
    throttle.failed("p", "r")  # throttled: the alert, and a window opened at 5.0
    clock.now = 15.0  # exactly window_s later (0.1 of a token back: still throttled)
    throttle.failed("p", "r")
    due = throttle.due()  # the new window, opened at 15.0, is not closed yet
    assert [(e.kind, e.detail.get("requests")) for e in due] == [("alert", None), ("refused", 1)]
    clock.now = 27.0  # 12 s into the second window
    throttle.failed("p", "r")
    assert [(e.kind, e.detail["requests"]) for e in throttle.due()] == [("refused", 1)]
    clock.now = 37.0
    assert [(e.kind, e.detail["requests"]) for e in throttle.due()] == [("refused", 1)]


def test_a_peer_s_tokens_come_back_with_the_time_elapsed_on_a_clock_that_starts_small() -> None:
    clock = Clock()
    clock.now = 5.0
    throttle = PeerThrottle(FailedAuthLimit(burst=2, per_second=1.0), monotonic=clock)
    assert [throttle.failed("p", "r") for _ in range(2)] == [0.0, 0.0]  # the bucket is empty
    clock.now = 10.0  # 5 s later: full again
    assert [throttle.failed("p", "r") for _ in range(2)] == [0.0, 0.0]


def test_a_negative_failure_rate_waits_an_hour() -> None:
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=-1.0), monotonic=Clock())
    assert throttle.failed("p", "r") == 0.0
    assert throttle.failed("p", "r") == 3600.0


@pytest.mark.parametrize("zone", ["eth0", "", "a%b"])
def test_an_ipv6_peer_s_zone_is_dropped_whatever_it_holds(zone: str) -> None:
    assert peer_address(f"ipv6:[fe80::1%{zone}]:443") == "fe80::/64"


def test_an_address_given_as_ipv4_is_never_widened_to_a_network() -> None:
    """Only an ``ipv6:`` peer is counted by its /64; whatever an ``ipv4:`` peer holds is its host."""
    assert peer_address("ipv4:[2001:db8::7]:443") == "2001:db8::7"


def test_the_failed_authentication_limit_cannot_be_changed_once_made() -> None:
    limit = FailedAuthLimit()
    with pytest.raises(dataclasses.FrozenInstanceError):
        limit.burst = 1_000_000  # type: ignore[misc]
    assert hash(limit) == hash(FailedAuthLimit())


def test_a_negative_rate_waits_forever_never_a_negative_wait() -> None:
    """A rate of zero or less never refills the bucket: once it is short the wait is unbounded (a
    negative wait would tell the caller to retry at once)."""
    limiter = RateLimiter(Clock())
    assert limiter.take("a", -1.0, 1) == 0.0
    assert limiter.take("a", -1.0, 1) == float("inf")


def test_a_seeded_count_of_zero_counts_nothing() -> None:
    quota = PersonQuota()
    at = dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)
    quota.seed("a", PersonQuota.day_of(at), 0)
    assert quota.used("a", at) == 0
    assert quota.take("a", at, 1) and not quota.take("a", at, 1)


def test_a_caller_with_no_lookup_has_used_none() -> None:
    assert PersonQuota().used("nobody", dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)) == 0


def test_ten_thousand_peers_are_kept_and_the_next_evicts_the_least_recent() -> None:
    """The documented default bound: 10,000 peers; the 10,001st evicts the least recent (its open window
    written)."""
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=1.0), monotonic=Clock())
    throttle.failed("p", "r")
    throttle.failed("p", "r")  # p is throttled, its window open
    assert [e.kind for e in throttle.due()] == ["alert"]
    for n in range(1, 10_000):
        throttle.failed(f"peer-{n}", "r")  # 10,000 peers with p
    assert throttle.due() == []
    throttle.failed("one-more", "r")
    assert [(e.kind, e.detail["peer"]) for e in throttle.due()] == [("refused", "p")]


def test_a_bucket_refills_with_the_time_elapsed_on_a_clock_that_starts_small() -> None:
    clock = Clock()
    clock.now = 5.0
    limiter = RateLimiter(clock)
    assert limiter.take("a", 1.0, 2, count=2) == 0.0
    clock.now = 10.0  # 5 s later: full again
    assert limiter.take("a", 1.0, 2, count=2) == 0.0


def test_a_refusal_counts_one_item_unless_told_otherwise() -> None:
    throttle = PeerThrottle(FailedAuthLimit(burst=1, per_second=1.0), monotonic=Clock())
    for _ in range(3):
        throttle.failed("p", "r")  # the last two throttled
    (aggregate,) = [e for e in throttle.due(everything=True) if e.kind == "refused"]
    assert (aggregate.detail["requests"], aggregate.detail["items"]) == (2, 2)


def test_a_lowered_burst_starts_a_full_bucket_of_the_new_size() -> None:
    limiter = RateLimiter(Clock())
    assert limiter.take("a", 1.0, 5, count=5) == 0.0
    assert limiter.take("a", 1.0, 2, count=2) == 0.0  # the burst lowered: a new bucket
    assert limiter.take("a", 1.0, 2) == pytest.approx(1.0)


def test_a_seed_never_takes_the_count_below_zero() -> None:
    quota = PersonQuota()
    at = dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)
    quota.seed("a", PersonQuota.day_of(at), -3)
    assert quota.used("a", at) == 0
