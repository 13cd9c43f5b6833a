"""The README's Python examples and ``examples/`` run as written against a live ``mustcheck demo`` — twice
in a row, as a new user who runs an example again would."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO

# The address and token file the README's examples name: the demo's defaults.
DEMO_PORT = 50051
DEMO_TOKEN = Path("mustcheck-demo") / "demo.token"
ENV = {**os.environ, "PYTHONUTF8": "1"}


def readme_python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Demo:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.printed: list[str] = []


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``mustcheck demo`` on its default address, run from a fresh folder, with what it printed."""
    if not _port_is_free(DEMO_PORT):
        message = f"port {DEMO_PORT}, which the README's examples name, is in use"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(f"{message}: stop what holds it to run the README examples")
    folder = tmp_path_factory.mktemp("readme")
    running = Demo(folder)
    process = subprocess.Popen(
        [sys.executable, "-m", "mustcheck_gateway", "demo", "--subjects", "300"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        for line in process.stdout:  # the tour, then the lines that say it keeps serving
            running.printed.append(line)
            if "Ctrl-C stops it" in line or time.monotonic() > deadline:
                break
        assert (folder / DEMO_TOKEN).is_file(), "the demo did not start"
        yield running
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


def test_the_readme_has_python_examples() -> None:
    blocks = readme_python_blocks()
    assert len(blocks) >= 2 and "Client(" in blocks[0]


@pytest.mark.slow
def test_the_readme_python_examples_run_twice(demo: Demo) -> None:
    program = "\n\n".join(readme_python_blocks())  # in order, as one reader's session
    for attempt in (1, 2):
        done = subprocess.run(
            [sys.executable, "-c", program],
            cwd=demo.folder,
            capture_output=True,
            text=True,
            timeout=120,
            env=ENV,
        )
        assert done.returncode == 0, f"run {attempt}:\n{done.stderr}"
        assert "keep with the decision: mcr2." in done.stdout


@pytest.mark.slow
def test_the_permit_flow_example_runs_twice_within_a_second(demo: Demo) -> None:
    command = [
        sys.executable,
        str(REPO / "examples" / "permit_flow.py"),
        "--token-file",
        str(DEMO_TOKEN),
        "91110108551385082Q",
    ]
    runs = [
        subprocess.run(command, cwd=demo.folder, capture_output=True, text=True, timeout=60, env=ENV)
        for _ in "12"
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr
    ids = [
        line.split()[0] for done in runs for line in done.stdout.splitlines() if line.startswith("PERMIT-")
    ]
    assert len(ids) == 2 and ids[0] != ids[1]


@pytest.mark.slow
def test_the_demo_auditor_report_command_works_as_printed(demo: Demo) -> None:
    (printed,) = [line.strip() for line in demo.printed if line.strip().startswith("mustcheck audit report")]
    command = [sys.executable, "-m", "mustcheck_gateway", *printed.split()[1:]]
    done = subprocess.run(command, cwd=demo.folder, capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 0, done.stderr
    report = demo.folder / printed.split("--out ")[1].split()[0]
    assert "<html" in report.read_text(encoding="utf-8").lower()
