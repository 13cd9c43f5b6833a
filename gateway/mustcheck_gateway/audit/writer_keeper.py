"""Keeping the audit writer process running, for either backend's log.

:class:`WriterKeeper` is mixed into :class:`~.audit_log.AuditLog` and
:class:`~.postgres_log.PostgresAuditLog`: when their writer process (:mod:`.remote_writer`) ends
without being told to, every waiter has been refused already (``AuditUnavailable``: nothing it was not
told was durable is answered); the log then says why appends are refused (:meth:`down`) and starts
another writer, again and again with a growing pause while starting fails, and records the restart
(a record of kind ``admin``, outcome ``audit.writer_restarted``). A tamper alarm at start keeps it
down, loudly.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from .errors import AuditError, AuditIntegrityError, AuditUnavailable
from .outage import Outage
from .remote_writer import Announcement, RemoteWriter

log = structlog.get_logger("mustcheck.audit")

RESTARTED_OUTCOME = "audit.writer_restarted"


class WriterKeeper:
    """The restart of a log's writer process. The log calls :meth:`_keep` before it starts its first
    writer, and :meth:`_stop_keeping` first thing in ``close``; it provides :meth:`_new_writer` and
    :meth:`_append_system`."""

    _writer: RemoteWriter
    _outage: Outage
    _attached: bool = False  # a worker attached to its gateway's writer: it does not record restarts

    def _keep(self) -> None:
        self._state = threading.Lock()
        self._closing = False
        self._down: str | None = None  # why the writer process is not running (None: it is)
        self._restarter: threading.Thread | None = None
        self.writer_restarts = 0

    def announce(self) -> Announcement:
        """A request that will append is under way: group commit may wait for it (use ``with``).
        ``AuditUnavailable`` (counted as a refusal) while the writer process is gone."""
        try:
            return self._writer.announce()
        except AuditUnavailable as error:
            self._outage.refused(str(error))
            raise

    def _new_writer(self) -> RemoteWriter:
        raise NotImplementedError

    def _append_system(self, writer: RemoteWriter, outcome: str, detail: dict[str, Any]) -> None:
        raise NotImplementedError

    def _where(self) -> dict[str, str]:
        """What names this log in the operational log."""
        return {}

    def _down_reason(self) -> str | None:
        """Why the writer process is not running now (None: it is)."""
        return self._down

    def _writer_stopped(self) -> None:
        """Called when the writer process ended without being told to: start another one."""
        with self._state:
            if self._closing:
                return
            self._down = "the audit writer process stopped; it is being restarted"
            self._restarter = threading.Thread(
                target=self._restart, name="mustcheck-audit-restart", daemon=True
            )
            self._restarter.start()
        log.error("audit_writer_stopped", **self._where())

    def _restart(self) -> None:
        delay = 0.05
        while True:
            with self._state:
                if self._closing:
                    return
            self._writer.close()  # reap the old process and its pipes
            try:
                writer = self._new_writer()
            except AuditIntegrityError as error:  # a tamper alarm: stay down, loudly
                with self._state:
                    self._down = f"the audit log does not verify: {error}"
                log.error("audit_writer_refused", error=str(error), **self._where())
                return
            except Exception as error:  # e.g. no space, or the database away: try again
                log.warning(
                    "audit_writer_restart_failed", error=repr(error), retry_in_s=delay, **self._where()
                )
                time.sleep(delay)
                delay = min(2.0, delay * 2)
                continue
            with self._state:
                if self._closing:
                    writer.close()
                    return
                self._writer = writer
                self._down = None
                self.writer_restarts += 1
            if self._attached:  # the process that holds the log records the restart
                log.info("audit_writer_attached_again", last_seq=writer.last_seq)
                return
            log.warning(
                "audit_writer_restarted",
                restarts=self.writer_restarts,
                last_seq=writer.last_seq,
                **self._where(),
            )
            try:
                self._append_system(writer, RESTARTED_OUTCOME, {"restarts": self.writer_restarts})
            except AuditError as error:
                log.error("audit_restart_not_recorded", error=str(error))
            return

    def _stop_keeping(self) -> None:
        """No more restarts (the log is closing); wait for one under way."""
        with self._state:
            self._closing = True
            restarter = self._restarter
        if restarter is not None:
            restarter.join()
