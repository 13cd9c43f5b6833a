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
from ..china_time import CHINA_STANDARD_TIME
from ..csv_cells import inert_fields, inert_row
from ..i18n import _
from ..report import CoverageRow, Names, Verification, render
from ..store import DEFAULT_FILE_NAME as STORE_FILE_NAME
from ..store import AuditHead, ListStore, StoreError, is_postgres_url, open_store, redacted
from . import audit_tree
from .common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    DeprecatedAlias,
    Subparsers,
    add_gateway_option,
    fail,
    print_json,
    shown_instant,
)
from .dates import day, day_help, instant, instant_help
from .names import policy_names
from .numbers import MOST_SEQ, whole
from .rpc import CallOptions, as_dict, run_with_stub, write_text_chunks

EXIT_TAMPERED = 1
QUERY_PAGE = 100
QUERY_MOST = 10_000  # the gateway's bound on one query
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
        help=_("verify, query, reveal, export, prune the audit log"),
        description=_(
            "Auditor tools: verify the tamper-evident log, query who checked whom, reveal subjects "
            "(reveal role), export, prune past retention (3 years)."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    verify = actions.add_parser(
        "verify",
        help=_("walk the chain and checkpoints; exit 0 intact, 1 tampered"),
        description=_(
            "Walk the hash chain and the signed checkpoints and report the first bad record. "
            "With --data-dir it runs offline on a (copy of a) data directory, needing only the public keys."
        ),
    )
    verify.add_argument("--data-dir", type=Path, metavar="DIR", help=_("verify offline, without a gateway"))
    verify.add_argument(
        "--public-keys",
        type=Path,
        metavar="DIR",
        help=f"public verification keys (default DIR/{KEYS_DIR_NAME}/public)",
    )
    verify.add_argument(
        "--store",
        metavar="URL|DIR",
        help=_(
            "with --data-dir: also prove the chain reaches the head its gateway published in this store "
            "(a postgresql:// URL, or the data directory of an embedded store)"
        ),
    )
    audit_tree.add_verify_options(verify)
    verify.add_argument("--json", action="store_true")
    add_gateway_option(verify)
    verify.set_defaults(run=run_verify)
    audit_tree.register_prove(actions)

    heads = actions.add_parser(
        "heads",
        help=_("list every gateway's audit chain and its published head"),
        description=_(
            "List the audit chains that make up the record (one per gateway, docs/scaling.md): "
            "replica id, the last signed checkpoint each published, and when; with a postgresql:// URL "
            "also every replica's log in the database and its newest signed tree head."
        ),
    )
    heads.add_argument(
        "--store", required=True, metavar="URL|DIR", help=_("a postgresql:// URL or a data dir")
    )
    heads.add_argument("--json", action="store_true")
    heads.set_defaults(run=run_heads)

    query = actions.add_parser(
        "query", help=_("search records"), description=_("Search audit records (auditor role).")
    )
    _add_filters(query)
    query.add_argument(
        "--limit",
        type=int,
        default=QUERY_PAGE,
        metavar="N",
        help=_("show the newest N matching records (default {page}, at most {most})").format(
            page=QUERY_PAGE, most=QUERY_MOST
        ),
    )
    query.add_argument(
        "--before-seq",
        type=whole(0, MOST_SEQ),
        default=0,
        metavar="SEQ",
        help=_("only records older than record SEQ: the next page back, as a truncated listing says"),
    )
    _add_table_output(query)
    add_gateway_option(query)
    query.set_defaults(run=lambda options: _online(options, _query))

    reveal = actions.add_parser(
        "reveal",
        help=_("decrypt the subjects of records (reveal role; audited)"),
        description=_(
            "Decrypt the subjects of the given records. Needs the auditor and reveal roles; "
            "the reveal is itself audited."
        ),
    )
    reveal.add_argument("seqs", type=whole(1, MOST_SEQ), nargs="+", metavar="SEQ")
    reveal.add_argument("--purpose", required=True, help=_("why the subjects are needed"))
    reveal.add_argument(
        "--log",
        default="",
        metavar="LOG_ID",
        help=_("the log the records are in (audit query shows it; default: the gateway's own)"),
    )
    reveal.add_argument("--json", action="store_true")
    add_gateway_option(reveal)
    reveal.set_defaults(run=lambda options: _online(options, _reveal))

    export = actions.add_parser(
        "export",
        help=_("export records as JSON Lines or CSV"),
        description=_("Export audit records (subjects as keyed hashes)."),
    )
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--out", type=Path, metavar="FILE", help=_("write to FILE (default stdout)"))
    _add_filters(export)
    add_gateway_option(export)
    export.set_defaults(run=lambda options: _online(options, _export))

    coverage = actions.add_parser(
        "coverage",
        help=_("应查必查 / 奖惩到位: were approvals backed by checks, were measures applied"),
        description=_(
            "Per must-check matter: approvals reported; approvals backed by an earlier check of the "
            "same subject and matter; approvals without one; mandatory measures that applied but were "
            "reported as not applied; checks with restrictions never followed by feedback. Auditor role."
        ),
    )
    _add_window(coverage)
    coverage.add_argument("--department", default="", metavar="CODE")
    coverage.add_argument("--matter", default="", metavar="CODE")
    _add_table_output(coverage)
    add_gateway_option(coverage)
    coverage.set_defaults(run=lambda options: _online(options, _coverage))

    statistics = actions.add_parser(
        "stats",
        help=_("跟踪问效: checks by department, matter, memorandum, measure or outcome"),
        description=_("Successful checks counted per day or month (China Standard Time). Auditor role."),
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
        help=_("write a self-contained HTML report (coverage, measures, checks over time, chain)"),
        description=_(
            "Write one self-contained HTML file (no network; charts as inline SVG), in the command's "
            "language: the chain's verification status, the exceptions as a worklist, coverage per "
            "department and matter, restrictions mandated versus applied, checks over time. Auditor role."
        ),
    )
    _add_window(report)
    report.add_argument("--out", type=Path, required=True, metavar="FILE")
    add_gateway_option(report)
    report.set_defaults(run=lambda options: _online(options, _report))

    prune = actions.add_parser(
        "prune",
        help=_("delete records older than a date, never inside the 3-year retention"),
        description=_(
            "Delete records older than --before. Refused when --before is less than three years ago "
            "(个人信息保护法 Art. 56). Run it on a data directory whose gateway is stopped."
        ),
    )
    prune.add_argument(
        "--before", type=day, required=True, metavar="YYYY-MM-DD", help=day_help(_("delete records before"))
    )
    prune.add_argument("--data-dir", type=Path, required=True, metavar="DIR")
    prune.set_defaults(run=run_prune)

    rotate = actions.add_parser(
        "rotate-key",
        help=_("add a new current key (hmac, enc or sign); old records stay verifiable"),
        description=_(
            "Rotate one of the audit keys. Older records keep their key ids and stay searchable, "
            "decryptable and verifiable. Run it on a data directory whose gateway is stopped."
        ),
    )
    rotate.add_argument("kind", choices=["hmac", "enc", "sign"])
    rotate.add_argument("--data-dir", type=Path, required=True, metavar="DIR")
    rotate.set_defaults(run=run_rotate)


def _add_window(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--since", type=instant, metavar="DATE|INSTANT", help=instant_help(_("from (inclusive)"))
    )
    parser.add_argument(
        "--until", type=instant, metavar="DATE|INSTANT", help=instant_help(_("until (exclusive)"))
    )


def _add_table_output(parser: argparse.ArgumentParser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(_("filters"))
    _add_window(group)
    group.add_argument("--caller", default="", metavar="CALLER_ID")
    group.add_argument("--department", default="", metavar="CODE")
    group.add_argument("--matter", default="", metavar="CODE")
    group.add_argument(
        "--outcome", default="", help=_("e.g. restrictions, no_record, denied, invalid_input, alert")
    )
    group.add_argument(
        "--record-kind",
        "--kind",
        action=DeprecatedAlias,
        old=["--kind"],  # one meaning per flag: `check --subject-kind` once was `check --kind`
        dest="kind",
        default="",
        metavar="KIND",
        help=_(
            "record kind: check, batch_item, batch, replay, feedback, admin, audit, reveal, alert, refused, "
            "keys, watch (--kind is a deprecated alias)"
        ),
    )
    group.add_argument(
        "--subject",
        default="",
        metavar="ID",
        help=_("raw identifier: the gateway computes its keyed hash (never stored in clear)"),
    )


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
    if options.data_dir is None and options.store and is_postgres_url(options.store):
        return _verify_postgres(options)
    if options.data_dir is None:
        return _online(options, _verify_online)
    database = options.data_dir / DEFAULT_FILE_NAME
    if not database.is_file():
        return fail(_("no audit log at {path}").format(path=database), EXIT_INVALID)
    public_keys = options.public_keys or options.data_dir / KEYS_DIR_NAME / "public"
    try:
        heads = [] if options.receipts is None else audit_tree.receipt_heads(options.receipts, public_keys)
        state = audit_tree.read_state(options, read_replica_id(options.data_dir))
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


def _verify_postgres(options: argparse.Namespace) -> int:
    """Every replica's log in the PostgreSQL database, offline (read-only, with the public keys)."""
    from ..audit.keys import load_public_keys
    from ..audit.postgres_log import combined, verify_logs

    if options.public_keys is None:
        return fail(_("--store without --data-dir needs --public-keys DIR"), EXIT_INVALID)
    try:
        heads = (
            []
            if options.receipts is None
            else audit_tree.receipt_heads(options.receipts, options.public_keys)
        )
        states = audit_tree.read_states(options)
        public = load_public_keys(options.public_keys)
        reports = verify_logs(options.store, public, heads=heads, states=states)
    except (OSError, ValueError, AuditError) as error:
        return fail(str(error), EXIT_INVALID)
    except Exception as error:  # psycopg's errors: the database cannot be reached or read
        return fail(
            _("cannot read the audit logs in {url}: {error}").format(
                url=redacted(options.store), error=error
            ),
            EXIT_INVALID,
        )
    if not options.json:
        for log_id, report in reports:
            verdict = _("intact") if report.ok else _("TAMPERED")
            print(
                _("log {log}: {verdict} ({records} records)").format(
                    log=log_id, verdict=verdict, records=report.records_checked
                )
            )
    report = combined(reports)
    if report.ok:  # every log verified: each one's next verification starts from here
        audit_tree.write_states(options.state, [r.state for _, r in reports if r.state is not None])
    return _print_verdict(
        options,
        report.ok,
        report.records_checked,
        report.checkpoints_checked,
        report.problem_seq,
        report.reason,
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
    rows: list[dict[str, Any]] = [
        {
            "replica": head.replica,
            "backend": "embedded",
            "seq": head.seq,
            "record_hash": head.record_hash,
            "key_id": head.key_id,
            "signed_at": head.signed_at.isoformat(),
            "published_at": head.published_at.isoformat(),
            "tree_head": head.tree_head or None,
        }
        for head in heads
    ]
    if is_postgres_url(options.store):
        try:
            rows += _postgres_heads(options.store)
        except Exception as error:  # psycopg's errors, or a stored head that cannot be read
            return fail(
                _("cannot read the audit logs in {url}: {error}").format(
                    url=redacted(options.store), error=error
                ),
                EXIT_INVALID,
            )
    if options.json:
        print_json(rows)
        return EXIT_OK
    for row in rows:
        if row["backend"] == "postgresql":
            if row["seq"] is None:
                print(_("{log}  (log in the database; no signed tree head yet)").format(log=row["replica"]))
            else:
                line = _("{log}  (log in the database)  tree head of {size} records, signed {at}  ({key})")
                at = shown_instant(str(row["signed_at"]))
                print(line.format(log=row["replica"], size=row["seq"], at=at, key=row["key_id"]))
            continue
        print(
            f"{row['replica']}  through record {row['seq']}  "
            f"signed {shown_instant(str(row['signed_at']))}  ({row['key_id']})"
        )
    embedded = sum(1 for row in rows if row["backend"] == "embedded")
    if embedded:
        print(
            _("{count} audit chain(s): verify each gateway's data directory with --store").format(
                count=embedded
            )
        )
    if len(rows) > embedded:
        print(
            _(
                "{count} audit log(s) in the database: verify them all with "
                "audit verify --store URL --public-keys DIR"
            ).format(count=len(rows) - embedded)
        )
    if not rows:
        print(_("no audit chain or audit log found"))
    return EXIT_OK


def _postgres_heads(url: str) -> list[dict[str, Any]]:
    """Every log in the PostgreSQL audit tables and its newest signed tree head."""
    from ..audit.postgres_log import newest_tree_heads

    rows: list[dict[str, Any]] = []
    for log_id, head in newest_tree_heads(url):
        rows.append(
            {
                "replica": log_id,
                "backend": "postgresql",
                "seq": None if head is None else head.size,
                "record_hash": None,
                "key_id": None if head is None else head.key_id,
                "signed_at": None if head is None else head.at,
                "published_at": None,
                "tree_head": None if head is None else head.to_json(),
            }
        )
    return rows


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
        print(
            _("intact: {records} records and {checkpoints} signed checkpoints verified").format(
                records=records, checkpoints=checkpoints
            )
        )
        for repair in repairs:
            print(_("repaired: {repair}").format(repair=repair))
    else:
        print(_("TAMPERED: {reason}").format(reason=reason))
        print(
            _("(first bad record: {seq}; {records} records checked before it)").format(
                seq=seq, records=records
            )
        )
    return EXIT_OK if ok else EXIT_TAMPERED


# -- query, reveal, export ---------------------------------------------------------------------


def _query(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    if not 0 < options.limit <= QUERY_MOST:
        return fail(
            _("--limit must be between 1 and {most}").format(most=QUERY_MOST),
            EXIT_INVALID,
        )
    message = _query_message(options)
    message.before_seq = options.before_seq
    # One record more than shown tells whether the listing is truncated.
    message.limit = min(options.limit + 1, QUERY_MOST)
    records = list(audit.Query(message, **call).records)
    # At the gateway's bound no extra record can be asked for: a full page is taken as truncated.
    truncated = len(records) > options.limit or len(records) == QUERY_MOST
    records = records[-options.limit :]
    _print_records(options, records)
    if truncated:
        print(
            _(
                "mustcheck: showing the newest {shown} matching records; older ones exist — "
                "page back with --before-seq {seq}, raise --limit (at most {most}), or use `audit export` "
                "for all of them"
            ).format(shown=len(records), seq=records[0].seq, most=QUERY_MOST),
            file=sys.stderr,
        )
    return EXIT_OK


def _print_records(options: argparse.Namespace, records: Sequence[pb.AuditRecord]) -> None:
    rows = [as_dict(record) for record in records]
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
        for record in records:
            at = (
                record.at.ToDatetime(tzinfo=dt.UTC)
                .astimezone(CHINA_STANDARD_TIME)
                .strftime("%Y-%m-%d %H:%M:%S CST")
            )
            # On PostgreSQL a record is named by its log (the replica that wrote it) and its seq.
            named = f"{record.log_id}/{record.seq}" if record.log_id else f"{record.seq:>8}"
            print(
                f"{named}  {at}  {record.kind}  {record.caller_id or '-'}  "
                f"{record.department or '-'}  "
                f"{record.matter or '-'}  {record.subject_kind or '-'}  {record.subject_hash[:16] or '-'}  "
                f"{record.outcome}  {record.status}  {record.data_version}"
            )


def _reveal(options: argparse.Namespace, audit: pb_grpc.AuditServiceStub, call: CallOptions) -> int:
    request = pb.RevealRequest(seqs=options.seqs, purpose=options.purpose, log_id=options.log)
    response = audit.Reveal(request, **call)
    if options.json:
        print_json([{"seq": item.seq, "subject": item.subject or None} for item in response.subjects])
    else:
        for item in response.subjects:
            print(f"{item.seq:>8}  {item.subject or _('(no subject)')}")
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
            # Each named by its log and seq: the records of several replicas' logs are covered.
            "restricted_checks": [{"log_id": ref.log_id, "seq": ref.seq} for ref in row.restricted_checks],
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
        # Counts first, in fixed columns; then the matter and department, names beside codes.
        names = policy_names()
        print(
            f"{_('reported'):>8} {_('backed'):>7} {_('unbacked'):>8} {_('measures missed'):>15} "
            f"{_('restricted, no feedback'):>24}  {_('matter')} / {_('department')}"
        )
        for row in rows:
            print(
                f"{row['approvals_reported']:>8} {row['approvals_backed']:>7} "
                f"{len(row['approvals_without_check']):>8} {len(row['mandatory_not_applied']):>15} "
                f"{row['restricted_checks_without_feedback']:>24}  "
                f"{names.matter(row['matter'])} / {names.department(row['department'])}"
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
    names = policy_names()
    verdict = audit.Verify(pb.VerifyRequest(), **call)
    page = render(
        since=options.since,
        until=options.until,
        coverage=rows,
        daily=daily,
        verification=Verification(verdict.ok, verdict.records, verdict.checkpoints, verdict.reason),
        generated_at=dt.datetime.now(CHINA_STANDARD_TIME),
        names=Names(departments=names.departments, matters=names.matters),
    )
    temporary = options.out.with_name(options.out.name + ".partial")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(options.out)
    print(_("report written to {path}").format(path=options.out))
    return EXIT_OK


# -- offline maintenance -------------------------------------------------------------------------


def run_prune(options: argparse.Namespace) -> int:
    before = dt.datetime.combine(options.before, dt.time(), CHINA_STANDARD_TIME)
    try:
        with AuditLog.open(options.data_dir) as log:
            deleted = log.prune(before, by="cli")
    except _RetentionError as error:
        return fail(_("refused: {error}").format(error=error), EXIT_INVALID)
    except AuditError as error:
        return fail(str(error), EXIT_FAILURE)
    print(_("pruned {count} records older than {day}").format(count=deleted, day=options.before))
    return EXIT_OK


def run_rotate(options: argparse.Namespace) -> int:
    try:
        key_id = KeyRing.load_or_create(options.data_dir / KEYS_DIR_NAME).rotate(options.kind)
    except AuditError as error:
        return fail(str(error), EXIT_FAILURE)
    print(
        _("new current {kind} key: {key} (the gateway uses it from its next start)").format(
            kind=options.kind, key=key_id
        )
    )
    return EXIT_OK
