"""Retries with backoff, only on UNAVAILABLE, and only within the call's deadline.

One policy for both clients: :class:`Attempts` decides, the clients only wait (``time.sleep`` or
``asyncio.sleep``). Nothing but UNAVAILABLE is retried — a denial, a bad request or a passed
deadline is final.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from ._errors import DeadlineExceeded, MustCheckError

# Below this much time left, another attempt could not get an answer back.
_MIN_ATTEMPT_S = 0.01


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` in all (1: no retry); waits grow from ``initial_backoff`` by ``multiplier`` up to
    ``max_backoff`` seconds, each with up to 50 % jitter taken off."""

    attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff or self.multiplier < 1:
            raise ValueError("backoff must satisfy 0 <= initial_backoff <= max_backoff and multiplier >= 1")


class Attempts:
    """One call's attempts against its deadline."""

    def __init__(
        self, policy: RetryPolicy, timeout: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.deadline = clock() + timeout
        self.made = 0

    def timeout(self) -> float:
        """The time the next attempt may take; raises ``DeadlineExceeded`` when none is left."""
        remaining = self.deadline - self.clock()
        if remaining < _MIN_ATTEMPT_S:
            raise DeadlineExceeded(
                "the call's deadline passed while retrying an unreachable gateway",
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        self.made += 1
        return remaining

    def backoff(self, error: MustCheckError) -> float | None:
        """How long to wait before trying again after ``error``; ``None``: do not retry."""
        if error.code is not grpc.StatusCode.UNAVAILABLE or self.made >= self.policy.attempts:
            return None
        policy = self.policy
        delay = min(policy.max_backoff, policy.initial_backoff * policy.multiplier ** (self.made - 1))
        delay *= 1 - random.random() / 2
        if self.clock() + delay + _MIN_ATTEMPT_S >= self.deadline:
            return None
        return delay
