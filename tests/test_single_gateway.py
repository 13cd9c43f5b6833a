"""One gateway per port and per data directory (issue 13, finding 7): a second ``mustcheck serve`` or
``mustcheck demo`` on a port or a data directory in use is refused at start with a clear message and a
non-zero exit status (no traceback), and ``demo`` never empties a directory a running gateway holds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mustcheck_gateway.cli.demo import DEMO_MARKER
from mustcheck_gateway.data_lock import DataDirInUse, DataDirLock, in_use
from mustcheck_gateway.server import ConfigError, GatewayConfig, GatewayThread

from conftest import POLICY_DIR
from processes import ServeProcess


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    """A gateway serving from a directory that an earlier demo left (so ``demo`` would empty it)."""
    data_dir = tmp_path / "held"
    data_dir.mkdir()
    (data_dir / DEMO_MARKER).write_text("an earlier demo\n")
    gateway = ServeProcess(data_dir)
    try:
        yield gateway, data_dir
    finally:
        gateway.stop(signal.SIGTERM)


def mustcheck(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mustcheck_gateway", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUTF8": "1"},
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_second_serve_on_a_busy_port_or_data_directory_is_refused(
    running: tuple[ServeProcess, Path], tmp_path: Path
) -> None:
    gateway, held = running
    busy_port = mustcheck(
        "serve", "--listen", f"127.0.0.1:{gateway.port}", "--data-dir", str(tmp_path / "other"),
        "--policies", str(POLICY_DIR),
    )  # fmt: skip
    assert_refused(busy_port, f"127.0.0.1:{gateway.port}", "in use")
    busy_dir = mustcheck(
        "serve", "--listen", "127.0.0.1:0", "--data-dir", str(held), "--policies", str(POLICY_DIR)
    )  # fmt: skip
    assert_refused(busy_dir, str(held), "in use by another gateway", f"process {gateway.process.pid}")
    assert gateway.process.poll() is None  # the first one serves on


def test_a_demo_never_takes_a_busy_port_or_empties_a_running_gateways_directory(
    running: tuple[ServeProcess, Path], tmp_path: Path
) -> None:
    gateway, held = running
    before = sorted(path.name for path in held.iterdir())
    assert "audit.sqlite3" in before
    busy_dir = mustcheck("demo", "--listen", "127.0.0.1:0", "--data-dir", str(held), "--exit-after-tour")
    assert_refused(busy_dir, str(held), "in use by another gateway")
    assert sorted(path.name for path in held.iterdir()) == before  # nothing emptied
    busy_port = mustcheck(
        "demo", "--listen", f"127.0.0.1:{gateway.port}", "--data-dir", str(tmp_path / "demo"),
        "--subjects", "10", "--exit-after-tour",
    )  # fmt: skip
    assert_refused(busy_port, f"127.0.0.1:{gateway.port}", "in use")
    assert gateway.process.poll() is None


def test_the_lock_is_the_gateways_until_it_stops(tmp_path: Path) -> None:
    config = GatewayConfig(data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    with GatewayThread(config) as gateway:
        assert in_use(tmp_path) is not None
        with pytest.raises(DataDirInUse):
            DataDirLock.acquire(tmp_path)
        second = GatewayThread(config)
        with pytest.raises(ConfigError, match="in use by another gateway"):
            second.start()
        taken = GatewayThread(GatewayConfig(data_dir=tmp_path / "b", listen=f"127.0.0.1:{gateway.port}"))
        with pytest.raises(ConfigError, match="in use"):
            taken.start()
        assert in_use(tmp_path / "b") is None  # the refused start let its directory go
    assert in_use(tmp_path) is None
    with GatewayThread(config):  # a restart takes it again
        assert in_use(tmp_path) is not None


@pytest.mark.slow
def test_two_demos_started_at_once_on_one_directory_never_empty_each_other(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "mustcheck_gateway", "demo", "--listen", "127.0.0.1:0",
        "--data-dir", str(tmp_path / "demo"), "--subjects", "50", "--exit-after-tour",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONUTF8": "1"}
    starts = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        for _ in range(2)
    ]
    results = [(start.wait(120), *start.communicate()) for start in starts]
    assert sorted(code for code, _, _ in results) == [0, 2]
    (refused,) = [err for code, _, err in results if code == 2]
    assert "in use by another gateway" in refused and "Traceback" not in refused
    (served,) = [out for code, out, _ in results if code == 0]
    assert "mustcheck audit report" in served  # its tour ran to the end on a directory nobody emptied


def test_a_gateway_that_fails_to_start_leaves_nothing_held(tmp_path: Path) -> None:
    # The metrics port is taken: the start fails before the gRPC listener is taken, and the data
    # directory is free for the next start.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        config = GatewayConfig(
            data_dir=tmp_path / "data", listen="127.0.0.1:0", policy_dir=POLICY_DIR, metrics_listen=busy
        )
        with pytest.raises(OSError):
            GatewayThread(config).start()
    with GatewayThread(
        GatewayConfig(data_dir=tmp_path / "data", listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    ) as gateway:
        assert gateway.port > 0
