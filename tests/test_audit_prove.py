"""``audit prove SEQ`` on the data directory of a running gateway: the database (what prove reads) lags
the journal by up to the index interval, so a record answered a moment ago may not be under a signed
tree head yet. Prove waits a short while for the gateway to index it, and otherwise says so and to retry.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mustcheck_gateway.audit import AuditEvent, AuditLog
from mustcheck_gateway.cli import main

MATTER = "MOF-0001"


def _event() -> AuditEvent:
    return AuditEvent(kind="check", caller_id="c", matter=MATTER, outcome="clear")


def test_prove_of_a_record_not_yet_indexed_waits_for_it_or_says_to_retry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A gateway's log that indexes its journal only when asked (tests only: normally every 50 ms).
    log = AuditLog.open(tmp_path, checkpoint_interval_s=3600.0, index_every=10**9, index_interval_s=3600.0)
    try:
        for _ in range(3):
            log.append_sync(_event())
        log.sign_head()  # indexed, under a signed tree head of size 3
        assert main(["audit", "prove", "3", "--data-dir", str(tmp_path), "--json"]) == 0
        capsys.readouterr()
        journaled = log.append_sync(_event())  # answered: durable in the journal, not yet indexed
        assert main(["audit", "prove", str(journaled), "--data-dir", str(tmp_path)]) == 2
        error = capsys.readouterr().err
        assert f"record {journaled} is not covered by the newest tree head (size 3) yet" in error
        assert "journal" in error and "retry in a moment" in error
        # A record the log does not hold at all is not said to be in the journal.
        assert main(["audit", "prove", "99", "--data-dir", str(tmp_path)]) == 2
        error = capsys.readouterr().err
        assert "record 99 is not covered" in error and "journal" not in error
        # While prove waits, the gateway indexes the record: then it is proven.
        indexer = threading.Timer(0.2, log.sign_head)
        indexer.start()
        try:
            assert main(["audit", "prove", str(journaled), "--data-dir", str(tmp_path)]) == 0
        finally:
            indexer.join()
        assert "proven" in capsys.readouterr().out
    finally:
        log.close()
