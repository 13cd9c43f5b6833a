"""``mustcheck audit verify|query|reveal|export|prune|rotate-key``: who queried whom, was the log altered.

``verify`` runs against a gateway (auditor role) or offline on a copy of the data
directory with only the public keys (``--data-dir``). ``prune`` and ``rotate-key`` work
on a data directory whose gateway is stopped (the log has one writer).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mustcheck._generated.v1 import audit_pb2 as pb
from mustcheck._generated.v1 import audit_pb2_grpc as pb_grpc
from mustcheck.identifiers import normalise

from ..audit import (
    DEFAULT_FILE_NAME,
    KEYS_DIR_NAME,
    AuditError,
    AuditLog,
    KeyRing,
    verify_data_dir,
)
from ..audit import RetentionError as _RetentionError
from ..chain_heads import REPLICA_FILE_NAME, head_problem, read_replica_id
from ..csv_cells import inert_fields, inert_row
from ..report import CoverageRow, Verification, render
from ..store import DEFAULT_FILE_NAME as STORE_FILE_NAME
from ..store import AuditHead, ListStore, StoreError, is_postgres_url, open_store, redacted
from . import audit_tree
from .common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    Subparsers,
    add_gateway_option,
    fail,
    print_json,
    shown_instant,
)
from .rpc import CallOptions, as_dict, run_with_stub, write_text_chunks

CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8))
EXIT_TAMPERED = 1
Handler = Callable[[argparse.Namespace, pb_grpc.AuditServiceStub, CallOptions], int]
QUERY_COLUMNS = (
    "seq",
    "at",
    "kind",
    "caller_id",
    "department",
    "matter",
    "subject_kind",
    "subject_hash",
    "outcome",
    "status",
    "data_version",
)


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "audit",
        help="verify, query, reveal, export, prune the audit log",
        description="Auditor tools: verify the tamper-evident log, query who checked whom, reveal subjects "
        "(reveal role), export, prune past retention (3 years).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    verify = actions.add_parser(
        "verify",
        help="walk the chain and checkpoints; exit 0 intact, 1 tampered",
        description="Walk the hash chain and the signed checkpoints and report the first bad record. "
        "With --data-dir it runs offline on a (copy of a) data directory, needing only the public keys.",
    )
    verify.add_argument("--data-dir", type=Path, metavar="DIR", help="verify offline, without a gateway")
    verify.add_argument(
        "--public-keys",
        type=Path,
        metavar="DIR",
        help=f"public verification keys (default DIR/{KEYS_DIR_NAME}/public)",
    )
    verify.add_argument(
        "--store",
        metavar="URL|DIR",
        help="with --data-dir: also prove the chain reaches the head its gateway published in this store "
        "(a postgresql:// URL, or the data directory of an embedded store)",
    )
    audit_tree.add_verify_options(verify)
    verify.add_argument("--json", action="store_true")
    add_gateway_option(verify)
    verify.set_defaults(run=run_verify)
    audit_tree.register_prove(actions)

    heads = actions.add_parser(
        "heads",
        help="list every gateway's audit chain and its published head",
        description="List the audit chains that make up the record (one per gateway, docs/scaling.md): "
        "replica id, the last signed checkpoint each published, and when.",
    )
    heads.add_argument("--store", required=True, metavar="URL|DIR", help="a postgresql:// URL or a data dir")
    heads.add_argument("--json", action="store_true")
    heads.set_defaults(run=run_heads)

    query = actions.add_parser(
        "query", help="search records", description="Search audit records (auditor role)."
    )
    _add_filters(query)
    query.add_argument("--limit", type=int, default=100)
    _add_table_output(query)
    add_gateway_option(query)
    query.set_defaults(run=lambda options: _online(options, _query))

    reveal = actions.add_parser(
        "reveal",
        help="decrypt the subjects of records (reveal role; audited)",
        description="Decrypt the subjects of the given records. Needs the auditor and reveal roles; "
        "the reveal is itself audited.",
    )
    reveal.add_argument("seqs", type=int, nargs="+", metavar="SEQ")
    reveal.add_argument("--purpose", required=True, help="why the subjects are needed")
    reveal.add_argument("--json", action="store_true")
    add_gateway_option(reveal)
    reveal.set_defaults(run=lambda options: _online(options, _reveal))

    export = actions.add_parser(
        "export",
        help="export records as JSON Lines or CSV",
        description="Export audit records (subjects as keyed hashes).",
    )
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--out", type=Path, metavar="FILE", help="write to FILE (default stdout)")
    _add_filters(export)
    add_gateway_option(export)
    export.set_defaults(run=lambda options: _online(options, _export))

    coverage = actions.add_parser(
        "coverage",
        help="应查必查 / 奖惩到位: were approvals backed by checks, were measures applied",
        description="Per must-check matter: approvals reported; approvals backed by an earlier check of the "
        "same subject and matter; approvals without one; mandatory measures that applied but were reported "
        "as not applied; checks with restrictions never followed by feedback. Auditor role.",
    )
    _add_window(coverage)
    coverage.add_argument("--department", default="", metavar="CODE")
    coverage.add_argument("--matter", default="", metavar="CODE")
    _add_table_output(coverage)
    add_gateway_option(coverage)
    coverage.set_defaults(run=lambda options: _online(options, _coverage))

    statistics = actions.add_parser(
        "stats",
        help="跟踪问效: checks by department, matter, memorandum, measure or outcome",
        description="Successful checks counted per day or month (China Standard Time). Auditor role.",
    )
    _add_window(statistics)
    statistics.add_argument(
        "--by", choices=["department", "matter", "memorandum", "measure", "outcome"], default="matter"
    )
    statistics.add_argument("--bucket", choices=["day", "month"], default="day")
    _add_table_output(statistics)
    add_gateway_option(statistics)
    statistics.set_defaults(run=lambda options: _online(options, _stats))

    report = actions.add_parser(
        "report",
        help="write a self-contained HTML report (coverage, measures, checks over time, chain)",
        description="Write one self-contained HTML file (no network; charts as inline SVG): coverage per "
        "department and matter, restrictions mandated versus applied, checks over time and the audit chain's "
        "verification status. Auditor role.",
    )
    _add_window(report)
    report.add_argument("--out", type=Path, required=True, metavar="FILE")
    add_gateway_option(report)
    report.set_defaults(run=lambda options: _online(options, _report))

    prune = actions.add_parser(
        "prune",
        help="delete records older than a date, never inside the 3-year retention",
        description="Delete records older than --before. Refused when --before is less than three years ago "
        "(个人信息保护法 Art. 56). Run it on a data directory whose gateway is stopped.",
    )
    prune.add_argument("--before", type=dt.date.fromisoformat, required=True, metavar="YYYY-MM-DD")
    prune.add_argument("--data-dir", type=Path, required=True, metavar="DIR")
    prune.set_defaults(run=run_prune)

    rotate = actions.add_parser(
        "rotate-key",
        help="add a new current key (hmac, enc or sign); old records stay verifiable",
        description="Rotate one of the audit keys. Older records keep their key ids and stay searchable, "
        "decryptable and verifiable. Run it on a data directory whose gateway is stopped.",
    )
    rotate.add_argument("kind", choices=["hmac", "enc", "sign"])
    rotate.add_argument("--data-dir", type=Path, required=True, metavar="DIR")
    rotate.set_defaults(run=run_rotate)


def _add_window(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--since", type=_instant, metavar="DATE|INSTANT", help="from (inclusive)")
    parser.add_argument("--until", type=_instant, metavar="DATE|INSTANT", help="until (exclusive)")


def _add_table_output(parser: argparse.ArgumentParser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters")
    _add_window(group)
    group.add_argument("--caller", default="", metavar="CALLER_ID")
    group.add_argument("--department", default="", metavar="CODE")
    group.add_argument("--matter", default="", metavar="CODE")
    group.add_argument(
        "--outcome", default="", help="e.g. restrictions, no_record, denied, invalid_input, alert"
    )
    group.add_argument(
        "--kind",
        default="",
        help="check, batch_item, batch, replay, feedback, admin, audit, reveal, alert, refused, keys, watch",
    )
    group.add_argument(
        "--subject",
        default="",
        metavar="ID",
        help="raw identifier: the gateway computes its keyed hash (never stored in clear)",
    )


def _instant(text: str) -> dt.datetime:
    if len(text) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), CHINA_STANDARD_TIME)
    instant = dt.datetime.fromisoformat(text)
    return instant if instant.tzinfo else instant.replace(tzinfo=CHINA_STANDARD_TIME)


def _query_message(options: argparse.Namespace) -> pb.AuditQuery:
    query = pb.AuditQuery(
        caller_id=options.caller,
        department=options.department,
        matter=options.matter,
        outcome=options.outcome,
        kind=options.kind,
        subject=normalise(options.subject) if options.subject else "",
        limit=getattr(options, "limit", 0),
    )
    _set_period(query, options)
    return query


def _online(options: argparse.Namespace, handler: Handler) -> int:
    return run_with_stub(options, pb_grpc.AuditServiceStub, handler)


# -- verify ----------------------------------------------------------------------------------


def run_verify(options: argparse.Namespace) -> int:
    if options.data_dir is None:
        return _online(options, _verify_online)
    database = options.data_dir / DEFAULT_FILE_NAME
    if not database.is_file():
        return fail(f"no audit log at {database}", EXIT_INVALID)
    public_keys = options.public_keys or options.data_dir / KEYS_DIR_NAME / "public"
    try:
        heads = [] if options.receipts is None else audit_tree.receipt_heads(options.receipts, public_keys)
        state = audit_tree.read_state(options)
        head = None if not options.store else _published_head(options.data_dir, options.store)
        if head is not None and head.tree_head:
            heads.append(audit_tree.published_tree_head(head.tree_head))
    except (OSError, ValueError, StoreError) as error:
        return fail(str(error), EXIT_INVALID)
    report = verify_data_dir(options.data_dir, public_keys, heads=heads, state=state)
    ok, reason, problem_seq = report.ok, report.reason, report.problem_seq
    if ok:
        audit_tree.write_state(options.state, report.state)
    if ok and head is not None:
        reason = head_problem(database, head, public_keys)
        ok, problem_seq = reason is None, (None if reason is None else head.seq)
    return _print_verdict(
        options, ok, report.records_checked, report.checkpoints_checked, problem_seq, reason, report.repairs
    )


def _open_store(where: str) -> ListStore:
    if is_postgres_url(where):
        return open_store(Path("."), url=where)
    if not (Path(where) / STORE_FILE_NAME).is_file():
        raise ValueError(f"no store at {where}: give a postgresql:// URL or a gateway's data directory")
    return open_store(Path(where))


def _published_head(data_dir: Path, where: str) -> AuditHead:
    replica = read_replica_id(data_dir)
    if replica is None:
        raise ValueError(f"{data_dir} has no {REPLICA_FILE_NAME}: no gateway has served from it")
    store = _open_store(where)
    try:
        heads = {head.replica: head for head in store.audit_heads()}
    finally:
        store.close()
    if replica not in heads:
        raise ValueError(f"replica {replica} ({data_dir}) has published no head in {redacted(where)}")
    return heads[replica]


def run_heads(options: argparse.Namespace) -> int:
    try:
        store = _open_store(options.store)
    except (StoreError, ValueError) as error:
        return fail(str(error), EXIT_INVALID)
    try:
        heads = store.audit_heads()
    finally:
        store.close()
    rows = [
        {
            "replica": head.replica,
            "seq": head.seq,
            "record_hash": head.record_hash,
            "key_id": head.key_id,
            "signed_at": head.signed_at.isoformat(),
            "published_at": head.published_at.isoformat(),
        }
        for head in heads
    ]
    if options.json:
        print_json(rows)
    else:
        for row in rows:
            print(
                f"{row['replica']}  through record {row['seq']}  "
                f"signed {shown_instant(str(row['signed_at']))}  ({row['key_id']})"
            )
        print(f"{len(rows)} audit chain(s): verify each gateway's data directory with --store")
    return EXIT_OK


def _verify_online(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    report = audit.Verify(pb.VerifyRequest(), **call)
    return _print_verdict(
        options,
        report.ok,
        report.records,
        report.checkpoints,
        report.first_bad_seq or None,
        report.reason or None,
    )


def _print_verdict(
    options: argparse.Namespace,
    ok: bool,
    records: int,
    checkpoints: int,
    seq: int | None,
    reason: str | None,
    repairs: Sequence[str] = (),
) -> int:
    if options.json:
        print_json(
            {
                "ok": ok,
                "records": records,
                "checkpoints": checkpoints,
                "first_bad_seq": seq,
                "reason": reason,
                "repaired": list(repairs),
            }
        )
    elif ok:
        print(f"intact: {records} records and {checkpoints} signed checkpoints verified")
        for repair in repairs:
            print(f"repaired: {repair}")
    else:
        print(f"TAMPERED: {reason}")
        print(f"(first bad record: {seq}; {records} records checked before it)")
    return EXIT_OK if ok else EXIT_TAMPERED


# -- query, reveal, export ---------------------------------------------------------------------


def _query(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    response = audit.Query(_query_message(options), **call)
    rows = [as_dict(record) for record in response.records]
    if options.json:
        print_json(rows)
    elif options.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(pb.AuditRecord.DESCRIPTOR.fields_by_name))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                inert_fields({key: "|".join(v) if isinstance(v, list) else v for key, v in row.items()})
            )
    else:
        print("  ".join(f"{column:>8}" if column == "seq" else column for column in QUERY_COLUMNS))
        for record in response.records:
            at = (
                record.at.ToDatetime(tzinfo=dt.UTC)
                .astimezone(CHINA_STANDARD_TIME)
                .strftime("%Y-%m-%d %H:%M:%S CST")
            )
            print(
                f"{record.seq:>8}  {at}  {record.kind}  {record.caller_id or '-'}  "
                f"{record.department or '-'}  "
                f"{record.matter or '-'}  {record.subject_kind or '-'}  {record.subject_hash[:16] or '-'}  "
                f"{record.outcome}  {record.status}  {record.data_version}"
            )
    return EXIT_OK


def _reveal(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    response = audit.Reveal(pb.RevealRequest(seqs=options.seqs, purpose=options.purpose), **call)
    if options.json:
        print_json([{"seq": item.seq, "subject": item.subject or None} for item in response.subjects])
    else:
        for item in response.subjects:
            print(f"{item.seq:>8}  {item.subject or '(no subject)'}")
    return EXIT_OK


def _export(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    chunks = audit.Export(pb.ExportRequest(format=options.format, filter=_query_message(options)), **call)
    write_text_chunks(chunks, options.out)
    return EXIT_OK


def _set_period(message: Any, options: argparse.Namespace) -> None:
    for name in ("since", "until"):
        value = getattr(options, name)
        if value is not None:
            getattr(message, name).FromDatetime(value.astimezone(dt.UTC))


def _coverage(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    request = pb.CoverageRequest(department=options.department, matter=options.matter)
    _set_period(request, options)
    report = audit.Coverage(request, **call)
    rows: list[dict[str, Any]] = [
        {
            "matter": row.matter,
            "department": row.department,
            "approvals_reported": row.approvals_reported,
            "approvals_backed": row.approvals_backed,
            "approvals_without_check": list(row.approvals_without_check),
            "mandatory_not_applied": [
                {"approval_id": m.approval_id, "measure_id": m.measure_id} for m in row.mandatory_not_applied
            ],
            "restricted_checks_without_feedback": row.restricted_checks_without_feedback,
        }
        for row in report.matters
    ]
    if options.json:
        print_json(rows)
    elif options.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(
            [
                "matter",
                "department",
                "approvals_reported",
                "approvals_backed",
                "approvals_without_check",
                "mandatory_not_applied",
                "restricted_checks_without_feedback",
            ]
        )
        for row in rows:
            missed = ";".join(f"{m['approval_id']}:{m['measure_id']}" for m in row["mandatory_not_applied"])
            writer.writerow(
                inert_row(
                    [
                        row["matter"],
                        row["department"],
                        row["approvals_reported"],
                        row["approvals_backed"],
                        ";".join(row["approvals_without_check"]),
                        missed,
                        row["restricted_checks_without_feedback"],
                    ]
                )
            )
    else:
        print(
            f"{'matter':24} {'department':16} {'reported':>8} {'backed':>7} {'unbacked':>8} "
            f"{'measures missed':>15} {'restricted, no feedback':>24}"
        )
        for row in rows:
            print(
                f"{row['matter']:24} {row['department']:16} {row['approvals_reported']:>8} "
                f"{row['approvals_backed']:>7} {len(row['approvals_without_check']):>8} "
                f"{len(row['mandatory_not_applied']):>15} {row['restricted_checks_without_feedback']:>24}"
            )
    return EXIT_OK


def _stats(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    request = pb.StatsRequest(by=options.by, bucket=options.bucket)
    _set_period(request, options)
    report = audit.Stats(request, **call)
    rows = [{"bucket": r.bucket, options.by: r.key, "checks": r.checks} for r in report.rows]
    if options.json:
        print_json(rows)
    elif options.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["bucket", options.by, "checks"])
        for r in report.rows:
            writer.writerow(inert_row([r.bucket, r.key, r.checks]))
    else:
        for r in report.rows:
            print(f"{r.bucket:10} {r.key:36} {r.checks:>8}")
    return EXIT_OK


def _report(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    coverage_request = pb.CoverageRequest()
    _set_period(coverage_request, options)
    stats_request = pb.StatsRequest(by="outcome", bucket="day")
    _set_period(stats_request, options)
    rows = [
        CoverageRow(
            matter=row.matter,
            department=row.department,
            reported=row.approvals_reported,
            backed=row.approvals_backed,
            without_check=tuple(row.approvals_without_check),
            mandatory_due=row.mandatory_due,
            mandatory_applied=row.mandatory_applied,
            mandatory_missed=tuple((m.approval_id, m.measure_id) for m in row.mandatory_not_applied),
            restricted_without_feedback=row.restricted_checks_without_feedback,
        )
        for row in audit.Coverage(coverage_request, **call).matters
    ]
    daily = [(r.bucket, r.key, r.checks) for r in audit.Stats(stats_request, **call).rows]
    verdict = audit.Verify(pb.VerifyRequest(), **call)
    page = render(
        since=options.since,
        until=options.until,
        coverage=rows,
        daily=daily,
        verification=Verification(verdict.ok, verdict.records, verdict.checkpoints, verdict.reason),
        generated_at=dt.datetime.now(CHINA_STANDARD_TIME),
    )
    temporary = options.out.with_name(options.out.name + ".partial")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(options.out)
    print(f"report written to {options.out}")
    return EXIT_OK


# -- offline maintenance -------------------------------------------------------------------------


def run_prune(options: argparse.Namespace) -> int:
    before = dt.datetime.combine(options.before, dt.time(), CHINA_STANDARD_TIME)
    try:
        with AuditLog.open(options.data_dir) as log:
            deleted = log.prune(before, by="cli")
    except _RetentionError as error:
        return fail(f"refused: {error}", EXIT_INVALID)
    except AuditError as error:
        return fail(str(error), EXIT_FAILURE)
    print(f"pruned {deleted} records older than {options.before}")
    return EXIT_OK


def run_rotate(options: argparse.Namespace) -> int:
    try:
        key_id = KeyRing.load_or_create(options.data_dir / KEYS_DIR_NAME).rotate(options.kind)
    except AuditError as error:
        return fail(str(error), EXIT_FAILURE)
    print(f"new current {options.kind} key: {key_id} (the gateway uses it from its next start)")
    return EXIT_OK
