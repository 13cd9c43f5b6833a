"""Load test with locust: approval systems calling the gateway through the SDK (``mustcheck.Client``).

Each locust user is one approval system holding one sync ``Client`` (made cooperative by
``grpc.experimental.gevent``) and one bearer token. Its tasks are a realistic mix:

- 90 % ``Check``: one subject, drawn from the demo population with Zipf-distributed popularity
  (a few subjects are checked very often, most rarely), for a matter of the query catalog;
- 8 % ``BatchCheck``: 20 to 100 distinct subjects at once (a tender's bidders, a subsidy's applicants);
- 2 % ``ReportOutcome``: execution feedback (执行反馈) resting on the receipt of one of this user's
  earlier checks, reporting the mandatory measures as applied.

Each call is one locust request event (request type ``grpc``, name ``Check``, ``BatchCheck`` or
``ReportOutcome``); an SDK error — or a batch item answered with an error — is a failure. No denial is
expected: every subject is valid and the caller is granted every matter.

The subjects are those of ``mustcheck demo`` (``mustcheck_gateway.demo_data``, same seed, policies and
``--subjects``), so run it against a demo gateway — see "Load test" in the README:

    mustcheck demo &
    mustcheck admin grants set demo --matter '*' --subject-kind organization --subject-kind person \\
        --rate 1000000 --burst 1000000 --daily-person-quota 1000000000 \\
        --gateway 127.0.0.1:50051 --token-file mustcheck-demo/admin.token
    locust -f benchmarks/locustfile.py --headless -u 32 -r 8 --run-time 60s --csv results/locust

Options (each also read from the environment variable named in brackets): ``--host`` [LOCUST_HOST]
(default 127.0.0.1:50051), ``--token-file`` [MUSTCHECK_TOKEN_FILE] (default mustcheck-demo/demo.token),
``--demo-subjects`` [MUSTCHECK_DEMO_SUBJECTS] (the demo's ``--subjects``, default 2000), ``--zipf-s``
[MUSTCHECK_ZIPF_S] (the Zipf exponent, default 1.0).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import itertools
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc.experimental.gevent as grpc_gevent
from locust import User, events, task
from locust.argument_parser import LocustArgumentParser

from mustcheck import BatchResult, CheckResult, Client, Receipt
from mustcheck_gateway.cli.demo import DEMO_SEED, DEMO_SUBJECTS, DEMO_TOKEN_FILE
from mustcheck_gateway.demo_data import generate_rows
from mustcheck_gateway.policy import default_policy_dir, load_policies
from mustcheck_gateway.server import DEFAULT_LISTEN

# Locust has patched the standard library (gevent) on import; gRPC must follow before any channel exists.
grpc_gevent.init_gevent()

REQUEST_TYPE = "grpc"
DEFAULT_TOKEN_FILE = Path("mustcheck-demo") / DEMO_TOKEN_FILE
PURPOSE = "负载测试 load test"
AUTHORIZATION_REF = "LOAD-AUTH-0001"  # person lookups need one under the demo's grant
BATCH_SIZES = (20, 100)
RECEIPTS_KEPT = 64
T = TypeVar("T")


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]  # locust hooks are untyped
def add_options(parser: LocustArgumentParser) -> None:
    group = parser.add_argument_group("MustCheck")
    group.add_argument(
        "--token-file",
        type=Path,
        env_var="MUSTCHECK_TOKEN_FILE",
        default=DEFAULT_TOKEN_FILE,
        help=f"the caller's bearer token (default {DEFAULT_TOKEN_FILE}, written by `mustcheck demo`)",
    )
    group.add_argument(
        "--demo-subjects",
        type=int,
        env_var="MUSTCHECK_DEMO_SUBJECTS",
        default=DEMO_SUBJECTS,
        help=f"the --subjects the demo was started with (default {DEMO_SUBJECTS})",
    )
    group.add_argument(
        "--zipf-s",
        type=float,
        env_var="MUSTCHECK_ZIPF_S",
        default=1.0,
        help="exponent of the subjects' Zipf popularity: weight 1/rank^s (default 1.0)",
    )


@dataclass(frozen=True)
class Population:
    """The demo's subjects, most popular first, with cumulative Zipf weights; and the catalog's matters."""

    subjects: tuple[str, ...]
    cum_weights: tuple[float, ...]
    matters: tuple[str, ...]

    def popular(self, rng: random.Random) -> str:
        """One subject, the one of rank k with probability proportional to 1/k^s."""
        return rng.choices(self.subjects, cum_weights=self.cum_weights)[0]

    def distinct(self, rng: random.Random, count: int) -> list[str]:
        return rng.sample(self.subjects, count)


@functools.cache
def population(subjects: int, zipf_s: float) -> Population:
    """The subjects ``mustcheck demo --subjects N`` loaded (regenerated: same seed, same policies)."""
    policy = load_policies(default_policy_dir())
    codes = sorted(
        {row["subject_code"] for row in generate_rows(subjects, DEMO_SEED, dt.date.today(), policy)}
    )
    # Popularity by a fixed shuffle, so that the demo's showcase (generated first) is not the hottest.
    random.Random(DEMO_SEED).shuffle(codes)
    weights = itertools.accumulate(1.0 / rank**zipf_s for rank in range(1, len(codes) + 1))
    return Population(tuple(codes), tuple(weights), tuple(sorted(policy.matters)))


class BatchItemsFailed(Exception):
    """Some items of a batch were answered with an error (none is expected: every subject is valid)."""


class ApprovalSystem(User):
    """One approval system: checks subjects inline, sometimes in batches, and reports its decisions."""

    host = DEFAULT_LISTEN

    def on_start(self) -> None:
        options = self.environment.parsed_options or argparse.Namespace()
        token_file = Path(getattr(options, "token_file", DEFAULT_TOKEN_FILE))
        self.population = population(
            getattr(options, "demo_subjects", DEMO_SUBJECTS), getattr(options, "zipf_s", 1.0)
        )
        self.rng = random.Random()
        self.receipts: deque[tuple[Receipt, list[str]]] = deque(maxlen=RECEIPTS_KEPT)
        self.client = Client(self.host or DEFAULT_LISTEN, token=token_file.read_text().strip())

    def on_stop(self) -> None:
        self.client.close()

    def _request(self, name: str, call: Callable[[], T]) -> T | None:
        """``call`` reported to locust as one request; None if it failed (locust has the exception)."""
        answer: T | None = None
        with self.environment.events.request.measure(REQUEST_TYPE, name):
            answer = call()
        return answer

    @task(90)
    def check(self) -> None:
        subject, matter = self.population.popular(self.rng), self.rng.choice(self.population.matters)
        result = self._request(
            "Check",
            lambda: self.client.check(subject, matter, purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF),
        )
        if result is not None:
            self._keep_receipt(result)

    @task(8)
    def batch_check(self) -> None:
        subjects = self.population.distinct(self.rng, self.rng.randint(*BATCH_SIZES))
        matter = self.rng.choice(self.population.matters)

        def call() -> BatchResult:
            batch = self.client.batch_check(
                subjects, matter, purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF
            )
            if batch.errors:
                first = batch.errors[0].error
                raise BatchItemsFailed(f"{len(batch.errors)} of {len(subjects)} items failed, first: {first}")
            return batch

        self._request("BatchCheck", call)

    @task(2)
    def report_outcome(self) -> None:
        """Feedback on the newest receipt not yet reported (a check instead while there is none)."""
        if not self.receipts:
            self.check()
            return
        receipt, applied = self.receipts.pop()
        approval_id = f"LOAD-{uuid.uuid4().hex}"  # fresh on every run: the gateway refuses a reused one
        self._request(
            "ReportOutcome", lambda: self.client.report_outcome(receipt, approval_id, "approved", applied)
        )

    def _keep_receipt(self, result: CheckResult) -> None:
        if result.receipt is not None:
            self.receipts.append((result.receipt, [measure.id for measure in result.mandatory_measures]))
