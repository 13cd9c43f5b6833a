"""Gateways as child processes: ``mustcheck serve`` as an operator runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from conftest import POLICY_DIR


class ServeProcess:
    """``mustcheck serve`` as a child process; stderr is drained into ``lines``."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mustcheck_gateway",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                "--policies",
                str(POLICY_DIR),
                # No drain period unless a test asks for one (a later --drain-seconds wins).
                "--drain-seconds",
                "0",
                # One process unless a test asks for workers (serve's default: one per core).
                "--workers",
                "1",
                *options,
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUTF8": "1"},
        )
        self.lines: list[str] = []
        self.port: int | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(30):
            self.process.kill()
            raise AssertionError("gateway did not start:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"listening on port (\d+)", line)
            if found:
                self.port = int(found.group(1))
                self._ready.set()

    def stop(self, signum: int) -> None:
        self.process.send_signal(signum)
        self.process.wait(30)
