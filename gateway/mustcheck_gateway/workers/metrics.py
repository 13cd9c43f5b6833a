"""One Prometheus scrape for the whole gateway: the supervisor sums its workers' metrics.

Each worker serves its own metrics on a private loopback port; the supervisor serves ``/metrics`` on
the address the operator gave (``serve --metrics``) and, at each scrape, reads every running worker's
and sums the series of the same name and labels: counters, histograms' buckets, sums and counts, and
gauges of amounts (cache entries, queue depths, open streams, memory). A few gauges are not amounts:
the process start time is the earliest, the last commit's duration the longest, and the cache hit
ratio is computed again from the summed hits and misses. It adds ``mustcheck_workers`` (workers
answering), ``mustcheck_worker_restarts_total`` and ``mustcheck_worker_checks_total{worker="i"}``
(which worker checked how many: how the kernel spreads the callers).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

_EARLIEST = {"process_start_time_seconds"}
_LARGEST = {"mustcheck_audit_last_commit_seconds", "process_max_fds"}
_RATIO = "mustcheck_lookup_cache_hit_ratio"
_SCRAPE_TIMEOUT_S = 2.0


def scrape(port: int) -> str | None:
    """A worker's metrics text, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=_SCRAPE_TIMEOUT_S) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def combine(texts: Iterable[str]) -> tuple[list[Metric], list[float]]:
    """The workers' metrics summed (see the module's docstring), and each worker's count of checks."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    checks: list[float] = []
    for text in texts:
        checked = 0.0
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            merged = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if family.name == "mustcheck_checks" and sample.name.endswith("_total"):
                    checked += sample.value
                if key not in merged:
                    merged[key] = sample.value
                elif family.name in _EARLIEST:
                    merged[key] = min(merged[key], sample.value)
                elif family.name in _LARGEST:
                    merged[key] = max(merged[key], sample.value)
                else:
                    merged[key] = merged[key] + sample.value
        checks.append(checked)
    if _RATIO in values:
        hits = sum(values.get("mustcheck_lookup_cache_hits", {}).values())
        misses = sum(values.get("mustcheck_lookup_cache_misses", {}).values())
        for key in values[_RATIO]:
            values[_RATIO][key] = hits / (hits + misses) if hits + misses else 0.0
    metrics: list[Metric] = []
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
        metrics.append(family)
    return metrics, checks


class _GatewayCollector(Collector):
    def __init__(
        self, worker_ports: Callable[[], list[tuple[int, int]]], restarts: Callable[[], int]
    ) -> None:
        self._worker_ports = worker_ports
        self._restarts = restarts

    def collect(self) -> Iterator[Metric]:
        answered: list[tuple[int, str]] = []
        for index, port in self._worker_ports():
            text = scrape(port)
            if text is not None:
                answered.append((index, text))
        metrics, checks = combine(text for _, text in answered)
        yield from metrics
        workers = Metric("mustcheck_workers", "Worker processes of this gateway answering", "gauge")
        workers.add_sample("mustcheck_workers", {}, float(len(answered)))
        yield workers
        restarts = Metric(
            "mustcheck_worker_restarts", "Worker processes started again after they ended", "counter"
        )
        restarts.add_sample("mustcheck_worker_restarts_total", {}, float(self._restarts()))
        yield restarts
        per_worker = Metric(
            "mustcheck_worker_checks", "Checked subjects by worker (since that worker started)", "counter"
        )
        for (index, _), checked in zip(answered, checks, strict=True):
            per_worker.add_sample("mustcheck_worker_checks_total", {"worker": str(index)}, checked)
        yield per_worker


class GatewayMetricsServer:
    """``/metrics`` for the whole gateway on ``listen`` (HOST:PORT; port 0 picks one)."""

    def __init__(
        self, listen: str, worker_ports: Callable[[], list[tuple[int, int]]], restarts: Callable[[], int]
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_GatewayCollector(worker_ports, restarts))
        host, _, port = listen.rpartition(":")
        self._server: Any
        self._server, _thread = start_http_server(
            int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry
        )
        self.port = int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
