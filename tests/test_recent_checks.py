"""What a Watch stream may name: the subjects its caller checked within its window (recent_checks.py)."""

from __future__ import annotations

from mustcheck_gateway.recent_checks import RecentChecks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_the_callers_own_subjects_within_its_window_are_selected() -> None:
    clock = Clock()
    recent = RecentChecks(horizon_s=100, clock=clock)
    recent.note("a", "s1")
    recent.note("b", "s2")
    clock.now += 30
    recent.note("a", "s3")
    change = frozenset({"s1", "s2", "s3", "s4"})
    assert sorted(recent.select("a", change, window_s=60).subjects) == ["s1", "s3"]
    assert recent.select("b", change, window_s=60).subjects == ["s2"]
    assert recent.select("c", change, window_s=60).subjects == []
    assert recent.select("a", change, window_s=10).subjects == ["s3"]  # s1 is older than this window
    clock.now += 80
    recent.note("a", "s5")  # past the horizon, s1 is forgotten
    assert recent.count("a") == 2
    # A large change walks the caller's few subjects instead: the same answer.
    large = frozenset({f"x{i}" for i in range(100)} | {"s3", "s5"})
    assert sorted(recent.select("a", large, window_s=100).subjects) == ["s3", "s5"]


def test_a_caller_over_its_bound_is_told_everything_until_the_forgotten_window_passes() -> None:
    clock = Clock()
    recent = RecentChecks(horizon_s=100, max_per_caller=2, clock=clock)
    for subject in ("s1", "s2", "s3"):
        recent.note("a", subject)
        clock.now += 1
    assert recent.count("a") == 2
    selection = recent.select("a", frozenset({"s1"}), window_s=50)
    assert selection.subjects == [] and selection.unsure  # s1 was forgotten early: maybe it changed
    assert not recent.select("b", frozenset({"s1"}), window_s=50).unsure
    clock.now += 60  # past the window of the forgotten check
    assert not recent.select("a", frozenset({"s1"}), window_s=50).unsure


def test_a_check_that_ends_without_its_audit_record_is_withdrawn() -> None:
    # The gateway notes a subject before its lookup; if the check then fails to be audited (the audit
    # log unavailable), the note is undone: streams name only subjects of audited checks.
    clock = Clock()
    recent = RecentChecks(horizon_s=100, clock=clock)
    change = frozenset({"s1", "s2"})
    first = recent.note("a", "s1")
    assert first is None
    recent.withdraw("a", "s1", first)
    assert recent.select("a", change, window_s=60).subjects == []
    recent.note("a", "s2")  # audited
    clock.now += 50
    earlier = recent.note("a", "s2")  # checked again, and this one is not audited
    recent.withdraw("a", "s2", earlier)
    assert recent.select("a", change, window_s=60).subjects == ["s2"]  # the audited check still counts
    assert recent.select("a", change, window_s=40).subjects == []  # but only from its own time
