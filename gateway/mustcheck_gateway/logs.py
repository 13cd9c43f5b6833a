"""Operational logs through structlog as JSON lines on stderr (never the audit log).

Events carry callers, matters, statuses and latencies; never raw identifiers or names.
"""

from __future__ import annotations

import logging
import sys

import structlog


class _CurrentStderr:
    """Standard error as it is when a line is written, not when logging was configured (a test harness
    or a daemon may replace ``sys.stderr`` later; a bound file object could be closed by then)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, level: str = "info", json: bool = True) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # A line and its newline in one write: print() writes them apart, and with an unbuffered stderr
        # (PYTHONUNBUFFERED, usual in containers) the processes of one gateway sharing it (supervisor,
        # workers, audit writer) spliced each other's lines. One write of up to PIPE_BUF bytes is atomic.
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
