"""The benchmark harness (issues "Speed and freshness", "Every core of the machine"): one command, every
target, one JSON line.

    python benchmarks/run.py [--quick] [--no-store-cache] [--cpus A-B] [--phases cost,closed,...]
                              [--crypto international|sm]

In one run it starts, each in a child process, the real gateway (bearer-token authentication, a
production grant, masking, the audit log and receipts on: `gateway_process.py --strict-grant`) and a
bare grpcio aio echo server (`echo_process.py`) that answers with the recorded bytes of the gateway's
own answers, so that both carry messages of the same size. The load generator is this process (plain
asyncio, through the SDK). With ``--cpus A-B`` the servers (gateway with its audit writer, echo) run on
the lower half of those cores and the generator on the upper half (``--cpus 0-1``: servers on core 0,
generator on core 1); without it nothing is pinned. Then:

1. cost: open loop at 300 checks/s on a fixed timetable (latency from each check's scheduled send
   time), three alternating rounds of echo and gateway; each round the CPU each server used a check —
   the gateway's with all its processes (the audit writer) — and its p99. ``cpu_ratio`` and
   ``p99_ratio`` are the medians of the rounds' gateway ÷ echo; ``checks_per_core`` is 10^6 ÷ the
   median gateway CPU microseconds a check;
2. closed loop, concurrency 32, `AsyncClient.check`, alternating rounds against echo and gateway
   (context: ``qps_ratio``);
3. `BatchCheck` of 100 subjects (closed loop, concurrency 4) versus single checks (closed loop,
   concurrency 32) in alternating rounds: ``batch_speedup`` is the median of the rounds' subjects/s ÷
   checks/s; ``batch_cpu_speedup`` (context) the median of the gateway's CPU a single check ÷ its CPU a
   batched subject, which a machine shared with other work disturbs less;
4. SDK cache hits: sync `Client(cache_size=…)`, repeated checks of cached answers on one thread,
   each call timed with `perf_counter_ns`;
5. change propagation: an SDK holds a cached "no record", an administrator blacklists the subject
   through `ListsService.AddEntry`; time until the SDK's cache has dropped the answer;
6. workers: ``benchmarks/workers_bench.py``, where the tree has it, run as a child (with ``--cpus``
   passed on); its last line is a JSON object with ``workers_speedup`` (closed-loop checks/s with
   ``--workers 2`` ÷ ``--workers 1``), copied into this run's line; absent, the figure is null;
7. scale: stores of 10,000 and 1,000,000 entries (`--quick`: 10,000 and 100,000) written straight
   through the store API by `build_store.py`, served side by side by two gateways; checks of distinct
   subjects never checked before (every lookup misses the gateway's cache, which stays on), one at a
   time, in alternating slices; `store.lookup` alone for comparison; each gateway's peak RSS after its
   lookup cache has been filled with distinct subjects.

Built stores are kept (by size, day and schema) under the system's temporary directory (about 1.9 GB
for a full run) and copied for each run; `--no-store-cache` builds afresh. ``--phases`` runs only the
phases named (its last line then has only their figures). The last line of a whole run is one JSON
object with the keys ``KEYS`` (a figure not measured is null).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from load import MATTERS, LoadResult, children, median, memory_mb, percentile, process_cpu

from mustcheck import AsyncClient, Client, Outcome
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import check_pb2, check_pb2_grpc, lists_pb2, lists_pb2_grpc
from mustcheck.identifiers import (
    SubjectKind,
    organization_code_check_character,
    uscc_check_character,
    validate_subject,
)
from mustcheck_gateway.evaluation import add_months
from mustcheck_gateway.store import open_store
from mustcheck_gateway.store.migrations import MIGRATIONS

HERE = Path(__file__).resolve().parent
PURPOSE = "benchmark"
AUTHORIZATION_REF = "bench-authorisation"
COST_RATE = 300.0  # checks/s: the fixed open-loop rate the CPU a check is measured at
COST_ROUNDS = 3
PROPAGATION_MATTER = "MOF-0001"  # must-check, fail closed: cached by the SDK within its tolerance
TARGETS = {
    "cpu_ratio": ("<=", 2.0),
    "p99_ratio": ("<=", 2.0),
    "checks_per_core": (">=", 1000.0),
    "workers_speedup": (">=", 1.3),
    "cache_hit_p99_us": ("<=", 20.0),
    "cache_hits_per_s": (">=", 50_000.0),
    "batch_speedup": (">=", 10.0),
    "scale_latency_ratio": ("<=", 1.2),
    "rss_mb_1m": ("<=", 400.0),
    "propagation_p99_ms": ("<=", 1000.0),
}


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: float
    concurrency: int
    cost_seconds: float
    batch_size: int
    batch_concurrency: int
    hit_calls: int
    propagation_repeats: int
    scale_sizes: tuple[int, int]
    scale_checks: int
    fill_subjects: int

    @classmethod
    def of(cls, quick: bool) -> Settings:
        if quick:
            return cls(1, 2.0, 32, 4.0, 100, 4, 200_000, 20, (10_000, 100_000), 400, 5_000)
        return cls(3, 5.0, 32, 10.0, 100, 4, 1_000_000, 50, (10_000, 1_000_000), 2_000, 100_000)


# -- child processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    pid: int
    ready: dict[str, Any]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.ready['port']}"

    def cpu_seconds(self) -> float:
        """CPU seconds the process and every process under it (the audit writer, workers) have used."""
        return tree_cpu(self.pid)

    def memory_mb(self) -> dict[str, float]:
        """Resident set now (VmRSS) and at its peak (VmHWM), from the kernel."""
        return memory_mb(self.pid)


def tree_cpu(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` and of every process under it, as far as they still run."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        try:
            total += process_cpu(each)
        except OSError:  # ended between the listing and the reading
            continue
    return total


def descendants(pid: int) -> list[int]:
    try:
        direct = children(pid)
    except OSError:
        return []
    return [*direct, *(grandchild for each in direct for grandchild in descendants(each))]


def parse_cpus(text: str) -> tuple[set[int], set[int]]:
    """``A-B`` (or a list such as ``0,2-3``): the lower half of the cores for the servers, the upper half
    for the load generator. At least two cores are needed."""
    cores: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        cores.update(range(int(first), int(last or first) + 1))
    ordered = sorted(cores)
    if len(ordered) < 2:
        raise ValueError(
            f"--cpus {text}: at least two cores are needed, one for the servers, one for the load"
        )
    servers = (len(ordered) + 1) // 2
    return set(ordered[:servers]), set(ordered[servers:])


SERVER_CPUS: set[int] | None = None  # set by --cpus: where the servers' processes run


def _pin_servers() -> None:  # in the child, before it runs: its own children inherit the affinity
    if SERVER_CPUS is not None:
        os.sched_setaffinity(0, SERVER_CPUS)


@contextmanager
def child(script: str, *args: str) -> Iterator[Child]:
    """``script`` in a child process that prints one JSON line when ready and stops when stdin closes."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pin_servers if SERVER_CPUS is not None else None,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"{script} exited before it was ready ({process.wait()})")
        yield Child(process.pid, json.loads(line))
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- loads -------------------------------------------------------------------------------------

Pair = tuple[str, str]


def client_for(target: str, token: str, **options: Any) -> AsyncClient:
    return AsyncClient(target, token=token, timeout=30, **options)


async def closed_loop(
    target: str, token: str, pairs: Sequence[Pair], *, concurrency: int, seconds: float, seed: int
) -> LoadResult:
    """``concurrency`` callers, each sending its next check when its previous answer arrives."""
    rng = random.Random(seed)
    latencies: list[float] = []
    async with client_for(target, token) as client:
        await client.check(*pairs[0], purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF)  # connect
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < deadline:
                subject, matter = rng.choice(pairs)
                started = time.perf_counter()
                await client.check(subject, matter, purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(len(latencies), elapsed, latencies)


@dataclass(frozen=True)
class OpenLoopResult:
    load: LoadResult
    errors: Counter[str]  # by exception class
    late_sends: int  # checks the generator sent more than 1 ms after their scheduled time


async def open_loop(
    target: str, token: str, pairs: Sequence[Pair], *, rate: float, seconds: float, seed: int
) -> OpenLoopResult:
    """Checks sent on a fixed timetable; each latency is measured from the check's *scheduled* send
    time, so a stalled server (or generator) cannot hide its queue (no coordinated omission)."""
    rng = random.Random(seed)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    late = 0

    async with client_for(target, token) as client:

        async def one(scheduled: float, subject: str, matter: str) -> None:
            try:
                await client.check(subject, matter, purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF)
            except Exception as error:
                errors[f"{type(error).__name__}({error})"[:120]] += 1
            latencies.append((time.perf_counter() - scheduled) * 1000)

        await client.check(*pairs[0], purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF)
        count = int(rate * seconds)
        tasks = []
        started = time.perf_counter() + 0.01
        for index in range(count):
            scheduled = started + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001:
                late += 1
            subject, matter = rng.choice(pairs)
            tasks.append(asyncio.create_task(one(scheduled, subject, matter)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return OpenLoopResult(LoadResult(count, elapsed, latencies), errors, late)


async def batch_loop(
    target: str,
    token: str,
    subjects: Sequence[str],
    *,
    size: int,
    concurrency: int,
    seconds: float,
    seed: int,
) -> LoadResult:
    """Closed loop of ``batch_check`` calls of ``size`` subjects; ``requests`` counts subjects."""
    rng = random.Random(seed)
    latencies: list[float] = []
    async with client_for(target, token) as client:
        await client.batch_check(
            rng.sample(subjects, size), MATTERS[0], purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF
        )
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < deadline:
                batch, matter = rng.sample(subjects, size), rng.choice(MATTERS)
                started = time.perf_counter()
                result = await client.batch_check(
                    batch, matter, purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF
                )
                latencies.append((time.perf_counter() - started) * 1000)
                assert len(result.items) == size

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(len(latencies) * size, elapsed, latencies)


async def record_responses(target: str, token: str, pairs: Sequence[Pair]) -> dict[Pair, bytes]:
    """The gateway's real answers (serialized) to every pair: what the echo server will send back."""
    metadata = auth_metadata(token)
    recorded: dict[Pair, bytes] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        queue = list(pairs)

        async def worker() -> None:
            while queue:
                subject, matter = queue.pop()
                request = check_pb2.CheckRequest(
                    subject=subject, matter=matter, purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF
                )
                response = await stub.Check(request, metadata=metadata, timeout=30)
                recorded[(subject, matter)] = response.SerializeToString()

        await asyncio.gather(*(worker() for _ in range(32)))
    return recorded


# -- SDK cache hits ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HitResult:
    calls: int
    seconds: float
    latencies_ns: list[int]
    not_from_cache: int

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    def us(self, p: float) -> float:
        return percentile(self.latencies_ns, p) / 1000


def wait_for(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def cache_hits(target: str, token: str, pairs: Sequence[Pair], calls: int) -> HitResult:
    """One thread, sync ``Client(cache_size=…)``: repeated checks of answers it has cached."""
    cached = list(pairs[:1000])
    with Client(target, token=token, timeout=30, cache_size=len(cached) * 2) as client:
        cache = client.cache
        assert cache is not None
        if not wait_for(cache.alive):
            raise RuntimeError("the SDK's change stream did not come up")
        for subject, matter in cached:
            client.check(subject, matter, purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF)
        latencies = [0] * calls
        missed = 0
        check, now = client.check, time.perf_counter_ns
        count = len(cached)
        started = time.perf_counter()
        for index in range(calls):
            subject, matter = cached[index % count]
            before = now()
            result = check(subject, matter, purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF)
            latencies[index] = now() - before
            if not result.from_cache:
                missed += 1
        elapsed = time.perf_counter() - started
    return HitResult(calls, elapsed, latencies, missed)


# -- change propagation ------------------------------------------------------------------------


class CodeMaker:
    """Fresh, valid unified social credit codes (synthetic) for subjects no store holds yet."""

    BODY = "0123456789ABCDEFGHJKLMNPQRTUWY"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uscc(self) -> str:
        body = "".join(self.rng.choice(self.BODY) for _ in range(8))
        first17 = "91" + "440305" + body + organization_code_check_character(body)
        return first17 + uscc_check_character(first17)


def blacklisting_row(subject: str, number: int) -> str:
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
    decision = today - dt.timedelta(days=1)
    return json.dumps(
        {
            "source": "bench",
            "subject_code": subject,
            "subject_name": "基准测试示例有限公司",
            "subject_kind": "organization",
            "memorandum": "judgment-defaulters",
            "list_kind": "black",
            "initiating_department": "court",
            "decision_document": f"基准〔{decision.year}〕{number:06d}号",
            "decision_date": decision.date().isoformat(),
            "severity": "serious",
            "reason": "基准测试：变更传播",
            "effective_date": decision.date().isoformat(),
            "punish_until": add_months(decision, 24).date().isoformat(),
            "display_until": add_months(decision, 24).date().isoformat(),
            "status": "active",
        },
        ensure_ascii=False,
    )


@dataclass(frozen=True)
class PropagationResult:
    latencies_ms: list[float]
    write_ms: list[float]
    failures: int


async def propagation(target: str, token: str, admin_token: str, repeats: int) -> PropagationResult:
    """Each round: a fresh subject's "no record" cached by the SDK, the subject blacklisted through the
    admin path, and the time from sending the write until the SDK's cache has dropped the answer."""
    makers = CodeMaker(33)
    latencies: list[float] = []
    writes: list[float] = []
    failures = 0
    admin = auth_metadata(admin_token)
    async with (
        client_for(target, token, cache_size=1000) as client,
        grpc.aio.insecure_channel(target) as channel,
    ):
        lists = lists_pb2_grpc.ListsServiceStub(channel)
        cache = client.cache
        assert cache is not None
        await client.check(makers.uscc(), PROPAGATION_MATTER, purpose=PURPOSE)  # starts the stream
        for _ in range(500):
            if cache.alive():
                break
            await asyncio.sleep(0.01)
        for number in range(1, repeats + 1):
            subject = makers.uscc()
            # The SDK's own key for this check (a private helper: the harness watches that one entry).
            key = client._cache_key(subject, PROPAGATION_MATTER, PURPOSE, "", None)
            first = await client.check(subject, PROPAGATION_MATTER, purpose=PURPOSE)
            assert first.outcome is Outcome.NO_RECORD
            for _ in range(100):  # stored once the stream has passed the answer's version
                if (await client.check(subject, PROPAGATION_MATTER, purpose=PURPOSE)).from_cache:
                    break
                await asyncio.sleep(0.01)
            else:
                failures += 1
                continue
            await asyncio.sleep(random.Random(number).uniform(0, 0.1))  # not in step with the feed's polls
            started = time.perf_counter()
            await lists.AddEntry(
                lists_pb2.EntryRow(row_json=blacklisting_row(subject, number)), metadata=admin, timeout=30
            )
            written = time.perf_counter()
            while cache.fresh(key) is not None and time.perf_counter() - started < 10:
                await asyncio.sleep(0.0005)
            dropped = time.perf_counter()
            after = await client.check(subject, PROPAGATION_MATTER, purpose=PURPOSE)
            if not cache.alive() or after.outcome is not Outcome.RESTRICTIONS or after.from_cache:
                failures += 1
                continue
            latencies.append((dropped - started) * 1000)
            writes.append((written - started) * 1000)
    return PropagationResult(latencies, writes, failures)


# -- scale -------------------------------------------------------------------------------------


def store_dir(entries: int, work: Path, cache_root: Path | None, today: dt.date) -> tuple[Path, str]:
    """A data directory holding a store of ``entries`` entries (built, or copied from the cache)."""
    data_dir = work / f"store-{entries}"
    data_dir.mkdir()
    source = data_dir
    how = "built"
    if cache_root is not None:
        source = cache_root / f"{entries}-{today.isoformat()}-schema{len(MIGRATIONS)}"
        if (source / "subjects.json").exists():
            how = "copied from the store cache"
        else:
            shutil.rmtree(source, ignore_errors=True)
            source.mkdir(parents=True)
    if how == "built":
        started = time.perf_counter()
        output = subprocess.run(
            [
                sys.executable,
                str(HERE / "build_store.py"),
                "--data-dir",
                str(source),
                "--entries",
                str(entries),
                "--sample",
                "150000",
                "--today",
                today.isoformat(),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        how = f"built in {time.perf_counter() - started:.0f} s: {output.strip()}"
    if source != data_dir:
        for name in ("mustcheck.sqlite3", "subjects.json"):
            shutil.copyfile(source / name, data_dir / name)
    return data_dir, how


@dataclass(frozen=True)
class ScaleResult:
    entries: int
    latencies_ms: list[float]
    memory_before_fill: dict[str, float]
    memory_after_fill: dict[str, float]
    filled: int
    how: str
    store_lookups_us: list[float]


async def uncached_checks(client: AsyncClient, subjects: Sequence[str]) -> list[float]:
    """One check at a time, each of a subject not checked before: every lookup misses the cache."""
    latencies: list[float] = []
    for subject in subjects:
        started = time.perf_counter()
        await client.check(subject, MATTERS[0], purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def fill(client: AsyncClient, subjects: Sequence[str]) -> None:
    for start in range(0, len(subjects), 1000):
        await client.batch_check(
            subjects[start : start + 1000], MATTERS[1], purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF
        )


def store_lookups(data_dir: Path, subjects: Sequence[str]) -> list[float]:
    """``store.lookup`` alone (no gRPC, no cache), in this process, each subject once: microseconds."""
    store = open_store(data_dir)
    latencies = []
    try:
        for subject in subjects:
            person = validate_subject(subject).kind is SubjectKind.PERSON
            started = time.perf_counter_ns()
            store.lookup(subject, person=person)
            latencies.append((time.perf_counter_ns() - started) / 1000)
    finally:
        store.close()
    return latencies


async def scale(
    sizes: tuple[int, int], settings: Settings, work: Path, cache_root: Path | None, today: dt.date
) -> list[ScaleResult]:
    """Both stores served at once, checked in alternating slices of 50, so that whatever else the
    machine does at the time weighs on both alike; then each gateway's cache is filled and its memory read."""
    prepared = [store_dir(entries, work, cache_root, today) for entries in sizes]
    samples: list[list[str]] = [
        json.loads((data_dir / "subjects.json").read_text(encoding="utf-8")) for data_dir, _ in prepared
    ]
    # Subjects the gateways will not be asked about (each sample's tail): the store's own share.
    alone = [
        store_lookups(data_dir, subjects[-settings.scale_checks :])
        for (data_dir, _), subjects in zip(prepared, samples, strict=True)
    ]
    checks, last = settings.scale_checks, 50 + settings.scale_checks
    with (
        child(
            "gateway_process.py", "--data-dir", str(prepared[0][0]), "--prebuilt", "--strict-grant"
        ) as first,
        child(
            "gateway_process.py", "--data-dir", str(prepared[1][0]), "--prebuilt", "--strict-grant"
        ) as second,
    ):
        gateways = (first, second)
        async with (
            client_for(first.target, first.ready["token"]) as small_client,
            client_for(second.target, second.ready["token"]) as big_client,
        ):
            clients = (small_client, big_client)
            for client, subjects in zip(clients, samples, strict=True):
                await uncached_checks(client, subjects[:50])  # connect, warm the code paths
            latencies: tuple[list[float], list[float]] = ([], [])
            for start in range(50, last, 50):
                order = (0, 1) if start % 100 else (1, 0)
                for which in order:
                    end = min(start + 50, last)
                    latencies[which].extend(await uncached_checks(clients[which], samples[which][start:end]))
            results = []
            for which, entries in enumerate(sizes):
                filler = samples[which][last : last + settings.fill_subjects]
                before = gateways[which].memory_mb()
                await fill(clients[which], filler)
                after = gateways[which].memory_mb()
                results.append(
                    ScaleResult(
                        entries,
                        latencies[which],
                        before,
                        after,
                        len(filler),
                        prepared[which][1],
                        alone[which],
                    )
                )
    assert all(len(result.latencies_ms) == checks for result in results)
    for data_dir, _ in prepared:
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


# -- the run ---------------------------------------------------------------------------------


def say(*parts: str) -> None:
    print("".join(parts), flush=True)


def verdict(key: str, value: float) -> str:
    op, bound = TARGETS[key]
    met = value >= bound if op == ">=" else value <= bound
    return f"target {op} {bound:g}: {'met' if met else 'MISSED'}"


def ms(values: Sequence[float], *ps: float) -> str:
    return ", ".join(f"p{p:g} {percentile(values, p):.2f} ms" for p in ps)


def cpu_share(server: Child, since: tuple[float, float], seconds: float) -> str:
    server_cpu, load_cpu = server.cpu_seconds() - since[0], cpu_self() - since[1]
    return f"CPU: server {server_cpu / seconds:.0%}, generator {load_cpu / seconds:.0%}"


async def record(gateway: Child, work: Path) -> tuple[list[Pair], Path]:
    """Pairs of subject and matter for the load, and the gateway's answers to them for the echo server."""
    token = gateway.ready["token"]
    rng = random.Random(7)
    pairs = [(subject, rng.choice(MATTERS)) for subject in gateway.ready["subjects"]]
    recorded = await record_responses(gateway.target, token, pairs)
    sizes = sorted(len(body) for body in recorded.values())
    responses_file = work / "responses.json"
    responses_file.write_text(
        json.dumps([[s, m, base64.b64encode(body).decode()] for (s, m), body in recorded.items()]),
        encoding="utf-8",
    )
    request = check_pb2.CheckRequest(
        subject=pairs[0][0], matter=pairs[0][1], purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF
    )
    say(
        f"# {len(pairs)} subject/matter pairs over {len(gateway.ready['subjects'])} demo subjects; request "
        f"about {request.ByteSize()} B, responses {sizes[0]}..{sizes[-1]} B "
        f"(median {sizes[len(sizes) // 2]} B), "
        "replayed byte for byte by the echo server; both receive the bearer token"
    )
    return pairs, responses_file


async def phase_closed(
    settings: Settings, echo: Child, gateway: Child, pairs: list[Pair], figures: Figures
) -> None:
    say(f"\n## closed loop, concurrency {settings.concurrency}, AsyncClient.check")
    token = gateway.ready["token"]
    qps: dict[str, list[float]] = {"echo": [], "gateway": []}
    for number in range(1, settings.rounds + 1):
        for label, server in (("echo", echo), ("gateway", gateway)):
            since = (server.cpu_seconds(), cpu_self())
            result = await closed_loop(
                server.target,
                token,
                pairs,
                concurrency=settings.concurrency,
                seconds=settings.seconds,
                seed=number,
            )
            qps[label].append(result.qps)
            say(f"round {number} {label:<8} {result.summary()}; {cpu_share(server, since, result.seconds)}")
    figures["echo_qps"] = median(qps["echo"])
    figures["gateway_qps"] = median(qps["gateway"])
    figures["qps_ratio"] = figures["gateway_qps"] / figures["echo_qps"]
    say(
        f"median echo {figures['echo_qps']:.0f}/s, gateway {figures['gateway_qps']:.0f}/s: "
        f"ratio {figures['qps_ratio']:.3f} (context: closed-loop rates measure the generator too)"
    )


@dataclass(frozen=True)
class CostRound:
    cpu_us: float  # server CPU a check (all its processes)
    generator_us: float
    p99_ms: float
    summary: str


async def cost_round(server: Child, token: str, pairs: list[Pair], seconds: float, seed: int) -> CostRound:
    before = (server.cpu_seconds(), cpu_self())
    opened = await open_loop(server.target, token, pairs, rate=COST_RATE, seconds=seconds, seed=seed)
    requests = opened.load.requests
    cpu_us = (server.cpu_seconds() - before[0]) / requests * 1e6
    generator_us = (cpu_self() - before[1]) / requests * 1e6
    failed = sum(opened.errors.values())
    errors = ", ".join(f"{count} {name}" for name, count in opened.errors.most_common()) or "none"
    # A failed check counts with its time until it failed; any failure makes the latency worthless.
    p99 = opened.load.percentile(99) if not failed else float("inf")
    summary = (
        f"{opened.load.summary()}; errors: {errors}; {opened.late_sends} sent > 1 ms late; CPU a check: "
        f"server {cpu_us:.0f} us, generator {generator_us:.0f} us"
    )
    return CostRound(cpu_us, generator_us, p99, summary)


async def phase_cost(
    settings: Settings, echo: Child, gateway: Child, pairs: list[Pair], figures: Figures
) -> None:
    say(
        f"\n## cost: open loop at {COST_RATE:g} checks/s for {settings.cost_seconds:g} s, {COST_ROUNDS} "
        "alternating rounds; server CPU a check (the gateway with its audit writer), latency from each "
        "check's scheduled send time"
    )
    token = gateway.ready["token"]
    rounds: dict[str, list[CostRound]] = {"echo": [], "gateway": []}
    for number in range(1, COST_ROUNDS + 1):
        order = (("echo", echo), ("gateway", gateway))
        for label, server in order if number % 2 else order[::-1]:
            measured = await cost_round(server, token, pairs, settings.cost_seconds, seed=10 + number)
            rounds[label].append(measured)
            say(f"round {number} {label:<8} {measured.summary}")
    cpu_ratios = [g.cpu_us / e.cpu_us for e, g in zip(rounds["echo"], rounds["gateway"], strict=True)]
    p99_ratios = [g.p99_ms / e.p99_ms for e, g in zip(rounds["echo"], rounds["gateway"], strict=True)]
    figures["echo_cpu_us"] = median([r.cpu_us for r in rounds["echo"]])
    figures["gateway_cpu_us"] = median([r.cpu_us for r in rounds["gateway"]])
    figures["cpu_ratio"] = median(cpu_ratios)
    figures["p99_ratio"] = median(p99_ratios)
    figures["checks_per_core"] = 1e6 / figures["gateway_cpu_us"]
    figures["echo_p99_ms"] = median([r.p99_ms for r in rounds["echo"]])
    figures["gateway_p99_ms"] = median([r.p99_ms for r in rounds["gateway"]])
    say(
        f"CPU a check: gateway {figures['gateway_cpu_us']:.0f} us, echo {figures['echo_cpu_us']:.0f} us; "
        f"ratio (median of the rounds' {', '.join(f'{r:.2f}' for r in cpu_ratios)}) "
        f"{figures['cpu_ratio']:.2f} ({verdict('cpu_ratio', figures['cpu_ratio'])})"
    )
    say(
        f"p99: gateway {figures['gateway_p99_ms']:.2f} ms, echo {figures['echo_p99_ms']:.2f} ms; ratio "
        f"(median of {', '.join(f'{r:.2f}' for r in p99_ratios)}) {figures['p99_ratio']:.2f} "
        f"({verdict('p99_ratio', figures['p99_ratio'])})"
    )
    say(
        f"checks a core: 10^6 / {figures['gateway_cpu_us']:.0f} us = {figures['checks_per_core']:.0f} "
        f"({verdict('checks_per_core', figures['checks_per_core'])})"
    )


async def phase_batch(settings: Settings, gateway: Child, pairs: list[Pair], figures: Figures) -> None:
    say(
        f"\n## BatchCheck of {settings.batch_size} subjects (closed loop, concurrency "
        f"{settings.batch_concurrency}) against single checks (closed loop, concurrency "
        f"{settings.concurrency}), "
        f"{settings.rounds} alternating rounds"
    )
    token = gateway.ready["token"]
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    for number in range(1, settings.rounds + 1):
        since = (gateway.cpu_seconds(), cpu_self())
        single = await closed_loop(
            gateway.target,
            token,
            pairs,
            concurrency=settings.concurrency,
            seconds=settings.seconds,
            seed=number,
        )
        single_cpu_us = (gateway.cpu_seconds() - since[0]) / single.requests * 1e6
        single_share = cpu_share(gateway, since, single.seconds)
        since = (gateway.cpu_seconds(), cpu_self())
        batched = await batch_loop(
            gateway.target,
            token,
            gateway.ready["subjects"],
            size=settings.batch_size,
            concurrency=settings.batch_concurrency,
            seconds=settings.seconds,
            seed=5 + number,
        )
        item_cpu_us = (gateway.cpu_seconds() - since[0]) / batched.requests * 1e6
        ratios.append(batched.qps / single.qps)
        cpu_ratios.append(single_cpu_us / item_cpu_us)
        say(
            f"round {number}: single {single.qps:.0f} checks/s ({single_share}; gateway CPU a check "
            f"{single_cpu_us:.0f} us); batch {batched.qps:.0f} subjects/s in {len(batched.latencies_ms)} "
            f"batches (a batch: {ms(batched.latencies_ms, 50, 99)}; "
            f"{cpu_share(gateway, since, batched.seconds)}; "
            f"gateway CPU a subject {item_cpu_us:.0f} us): x{ratios[-1]:.1f}, by CPU x{cpu_ratios[-1]:.1f}"
        )
    figures["batch_speedup"] = median(ratios)
    figures["batch_cpu_speedup"] = median(cpu_ratios)
    say(
        f"batch_speedup (median of the rounds) x{figures['batch_speedup']:.1f} "
        f"({verdict('batch_speedup', figures['batch_speedup'])}); context: gateway CPU a single check ÷ "
        f"gateway CPU a batched subject x{figures['batch_cpu_speedup']:.1f}"
    )


async def phase_hits(settings: Settings, gateway: Child, pairs: list[Pair], figures: Figures) -> None:
    say("\n## SDK cache hits: sync Client(cache_size=2000), one thread, perf_counter_ns around each call")
    hits = cache_hits(gateway.target, gateway.ready["token"], pairs, settings.hit_calls)
    figures["cache_hit_p99_us"] = hits.us(99)
    figures["cache_hits_per_s"] = hits.per_second
    say(
        f"{hits.calls} calls in {hits.seconds:.2f} s: {hits.per_second:,.0f} checks/s "
        f"({verdict('cache_hits_per_s', hits.per_second)}); p50 {hits.us(50):.2f} us, "
        f"p99 {hits.us(99):.2f} us ({verdict('cache_hit_p99_us', hits.us(99))}), "
        f"p99.9 {hits.us(99.9):.2f} us; {hits.not_from_cache} calls not answered from the cache"
    )


async def phase_propagation(settings: Settings, gateway: Child, figures: Figures) -> None:
    say(
        "\n## change propagation: a cached no-record answer, then a blacklisting through "
        f"ListsService.AddEntry, {settings.propagation_repeats} times"
    )
    result = await propagation(
        gateway.target, gateway.ready["token"], gateway.ready["admin_token"], settings.propagation_repeats
    )
    figures["propagation_p99_ms"] = percentile(result.latencies_ms, 99)
    say(
        f"write sent -> SDK cache dropped the answer: {ms(result.latencies_ms, 50, 99)}, max "
        f"{max(result.latencies_ms, default=float('nan')):.1f} ms "
        f"({verdict('propagation_p99_ms', figures['propagation_p99_ms'])}); the AddEntry call itself "
        f"{ms(result.write_ms, 50)}; {len(result.latencies_ms)} measured, {result.failures} failed"
    )


async def phase_workers(options: argparse.Namespace, figures: Figures) -> None:
    """``workers_speedup`` from ``workers_bench.py`` (a child), where the tree has it."""
    say("\n## workers: benchmarks/workers_bench.py")
    script = HERE / "workers_bench.py"
    if not script.exists():
        figures["workers_speedup"] = float("nan")
        say("not measured: benchmarks/workers_bench.py is not in this tree")
        return
    command = [
        sys.executable,
        str(script),
        *(["--cpus", options.cpus] if options.cpus else []),
        *(["--quick"] if options.quick else []),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    lines = finished.stdout.strip().splitlines()
    for line in lines[:-1]:
        say(f"  {line}")
    try:
        figures["workers_speedup"] = float(json.loads(lines[-1])["workers_speedup"])
    except (IndexError, KeyError, TypeError, ValueError):
        figures["workers_speedup"] = float("nan")
        say(
            f"workers_bench.py gave no workers_speedup (exit {finished.returncode}): {finished.stderr[-500:]}"
        )
        return
    speedup = figures["workers_speedup"]
    say(f"workers_speedup {speedup:.2f} ({verdict('workers_speedup', speedup)})")


async def phase_scale(
    settings: Settings, work: Path, cache_root: Path | None, today: dt.date, quick: bool, figures: Figures
) -> None:
    small, big = settings.scale_sizes
    say(
        f"\n## scale: {small:,} versus {big:,} list entries{' (--quick: smaller stores)' if quick else ''}; "
        f"{settings.scale_checks} checks each of distinct, never-checked subjects, one at a time, the two "
        "gateways in alternating slices of 50: each lookup misses the gateway's lookup cache, which stays on "
        "at its default size"
    )
    results = await scale(settings.scale_sizes, settings, work, cache_root, today)
    for entries, result in zip(settings.scale_sizes, results, strict=True):
        say(
            f"{entries:>9,} entries ({result.how}): check {ms(result.latencies_ms, 50, 90, 99)}; gateway RSS "
            f"{result.memory_before_fill.get('VmRSS', 0):.0f} MB, after {result.filled:,} more distinct "
            f"subjects {result.memory_after_fill.get('VmRSS', 0):.0f} MB "
            f"(peak {result.memory_after_fill.get('VmHWM', 0):.0f} MB)"
        )
    alone = [percentile(result.store_lookups_us, 50) for result in results]
    say(
        f"store.lookup alone (this process, no gRPC, no cache, {settings.scale_checks} other distinct "
        f"subjects): p50 {alone[0]:.0f} us at {small:,}, {alone[1]:.0f} us at {big:,} entries "
        f"(ratio {alone[1] / alone[0]:.2f}); p99 {percentile(results[0].store_lookups_us, 99):.0f} us and "
        f"{percentile(results[1].store_lookups_us, 99):.0f} us"
    )
    ratio = percentile(results[1].latencies_ms, 50) / percentile(results[0].latencies_ms, 50)
    figures["scale_latency_ratio"] = ratio
    figures["rss_mb_1m"] = results[1].memory_after_fill.get("VmHWM", float("nan"))
    say(
        f"p50 ratio {ratio:.3f} ({verdict('scale_latency_ratio', ratio)}); peak RSS at {big:,} entries "
        f"{figures['rss_mb_1m']:.0f} MB ({verdict('rss_mb_1m', figures['rss_mb_1m'])})"
    )


Figures = dict[str, float]
KEYS = (
    "cpu_ratio",
    "p99_ratio",
    "checks_per_core",
    "gateway_cpu_us",
    "echo_cpu_us",
    "batch_speedup",
    "batch_cpu_speedup",
    "workers_speedup",
    "echo_qps",
    "gateway_qps",
    "qps_ratio",
    "cache_hit_p99_us",
    "cache_hits_per_s",
    "scale_latency_ratio",
    "rss_mb_1m",
    "propagation_p99_ms",
)
PHASES = ("cost", "closed", "batch", "hits", "propagation", "workers", "scale")


def result_line(figures: Figures, keys: Sequence[str] = KEYS) -> str:
    """The run's last line: one JSON object with exactly ``keys`` (``KeyError`` if a figure is missing);
    a figure that could not be measured (NaN) is null."""
    return json.dumps({key: None if figures[key] != figures[key] else round(figures[key], 3) for key in keys})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short phases; stores of 10k and 100k entries")
    parser.add_argument("--no-store-cache", action="store_true", help="build the scale stores afresh")
    parser.add_argument(
        "--crypto", choices=("international", "sm"), default="international", help="the gateway's suite"
    )
    parser.add_argument(
        "--cpus", metavar="A-B", help="pin the servers to the lower half of these cores, the load to the rest"
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"the phases to run, of {','.join(PHASES)} (default: all)"
    )
    parser.add_argument(
        "--store-cache", type=Path, default=Path(tempfile.gettempdir()) / "mustcheck-bench-stores"
    )
    asyncio.run(run(parser.parse_args()))


async def run(options: argparse.Namespace) -> None:
    """Every phase on one event loop (grpc's aio poller outlives a loop, so one loop for the run)."""
    global SERVER_CPUS
    settings = Settings.of(options.quick)
    phases = [phase.strip() for phase in options.phases.split(",") if phase.strip()]
    if unknown := set(phases) - set(PHASES):
        raise SystemExit(
            f"--phases: unknown {', '.join(sorted(unknown))}; the phases are {', '.join(PHASES)}"
        )
    pinned = "nothing pinned"
    if options.cpus:
        SERVER_CPUS, generator_cpus = parse_cpus(options.cpus)
        os.sched_setaffinity(0, generator_cpus)
        pinned = f"servers on cores {sorted(SERVER_CPUS)}, generator on cores {sorted(generator_cpus)}"
    today = dt.date.today()
    cache_root = None if options.no_store_cache else options.store_cache
    started = time.perf_counter()
    say(
        f"# {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} "
        f"{'--quick' if options.quick else 'full run'}, crypto suite {options.crypto}; "
        f"Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, {os.cpu_count()} cores; {pinned}; load average "
        f"{', '.join(f'{load:.1f}' for load in os.getloadavg())}"
    )
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="mustcheck-run-") as work_name:
        work = Path(work_name)
        gateway_args = ("--data-dir", str(work / "gateway"), "--strict-grant", "--crypto", options.crypto)
        with child("gateway_process.py", *gateway_args) as gateway:
            pairs, responses_file = await record(gateway, work)
            with child("echo_process.py", "--responses", str(responses_file)) as echo:
                if "cost" in phases:
                    await phase_cost(settings, echo, gateway, pairs, figures)
                if "closed" in phases:
                    await phase_closed(settings, echo, gateway, pairs, figures)
            if "batch" in phases:
                await phase_batch(settings, gateway, pairs, figures)
            if "hits" in phases:
                await phase_hits(settings, gateway, pairs, figures)
            if "propagation" in phases:
                await phase_propagation(settings, gateway, figures)
        if "workers" in phases:
            await phase_workers(options, figures)
        if "scale" in phases:
            await phase_scale(settings, work, cache_root, today, options.quick, figures)
    say(
        f"\n# run took {time.perf_counter() - started:.0f} s; load average now "
        f"{', '.join(f'{load:.1f}' for load in os.getloadavg())}"
    )
    keys = KEYS if set(phases) == set(PHASES) else [key for key in KEYS if key in figures]
    print(result_line(figures, keys), flush=True)


if __name__ == "__main__":
    main()
