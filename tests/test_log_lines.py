"""Operational log lines stay whole when the processes of one gateway share standard error.

The supervisor, the workers and the audit writer of ``serve --workers`` write to one stderr. With an
unbuffered stderr (``PYTHONUNBUFFERED``, usual in containers) a line written apart from its newline
(``print``) let another process's line in between: a log reader got two JSON objects on one line (seen
as a flaky ``tests/test_workers.py``). Each line is now one write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

LINES = 5000
_CODE = f"""
import sys
import structlog
from mustcheck_gateway.logs import configure_logging
configure_logging()
log = structlog.get_logger("mustcheck.test")
sys.stdin.read()  # the writers start together
for number in range({LINES}):
    log.info("line", number=number, pad="x" * 40)
"""


def test_lines_of_processes_sharing_an_unbuffered_stderr_stay_whole() -> None:
    read, write = os.pipe()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1"}
    writers = [
        subprocess.Popen([sys.executable, "-c", _CODE], stdin=subprocess.PIPE, stderr=write, env=environment)
        for _ in range(2)
    ]
    os.close(write)
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.close()
    with os.fdopen(read, encoding="utf-8") as shared:
        lines = shared.read().splitlines()
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    events = [json.loads(line) for line in lines]  # a spliced line does not parse
    assert len(events) == 2 * LINES
    assert sorted(event["number"] for event in events) == sorted(list(range(LINES)) * 2)
