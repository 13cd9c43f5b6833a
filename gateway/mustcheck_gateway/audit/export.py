"""Exporting audit records as JSON Lines or CSV for auditors.

The subject appears only as its keyed hash: never in clear, and its ciphertext only on request
(``include_ciphertext``: with it, every stored field is exported, so a contiguous range can be
re-hashed and checked against the chain).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, Literal, TextIO

from ..csv_cells import inert_row
from .record import RECORD_COLUMNS, AuditRecord, canonical_json

ExportFormat = Literal["jsonl", "csv"]
CIPHERTEXT_FIELD = "subject_enc"


def _exported(record: AuditRecord, include_ciphertext: bool) -> dict[str, Any]:
    values = record.as_export()
    if not include_ciphertext:
        del values[CIPHERTEXT_FIELD]
    return values


def write_jsonl(records: Iterable[AuditRecord], out: TextIO, *, include_ciphertext: bool = False) -> int:
    count = 0
    for record in records:
        out.write(
            json.dumps(_exported(record, include_ciphertext), ensure_ascii=False, sort_keys=True) + "\n"
        )
        count += 1
    return count


def write_csv(
    records: Iterable[AuditRecord], out: TextIO, *, include_ciphertext: bool = False, log_ids: bool = False
) -> int:
    """One row per record; ``measure_ids`` and ``detail`` as JSON text; empty cells for no subject;
    ``log_ids`` puts each record's log id first (the records of several logs, on PostgreSQL)."""
    columns = [c for c in RECORD_COLUMNS if include_ciphertext or c != CIPHERTEXT_FIELD]
    if log_ids:
        columns.insert(0, "log_id")
    writer = csv.writer(out)
    writer.writerow(columns)
    count = 0
    for record in records:
        values = _exported(record, include_ciphertext)
        values.setdefault("log_id", record.log_id)
        values["measure_ids"] = canonical_json(values["measure_ids"])
        values["detail"] = canonical_json(values["detail"])
        writer.writerow(inert_row("" if values[name] is None else values[name] for name in columns))
        count += 1
    return count


def export_records(
    records: Iterable[AuditRecord],
    out: TextIO,
    format: ExportFormat = "jsonl",
    *,
    include_ciphertext: bool = False,
    log_ids: bool = False,
) -> int:
    """Write ``records`` to ``out``; return how many were written."""
    if format == "jsonl":
        return write_jsonl(records, out, include_ciphertext=include_ciphertext)
    if format == "csv":
        return write_csv(records, out, include_ciphertext=include_ciphertext, log_ids=log_ids)
    raise ValueError(f"unknown export format {format!r}; use 'jsonl' or 'csv'")
