"""``mustcheck admin callers|grants|tokens …``: who may query what (admin role)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from mustcheck._generated.v1 import admin_pb2 as pb
from mustcheck._generated.v1 import admin_pb2_grpc as pb_grpc

from ..auth.model import DEFAULT_WATCH_STREAMS, ROLES, VISIBLE_FIELDS
from ..bootstrap import write_secret
from .common import EXIT_OK, Subparsers, print_json, shown_date
from .rpc import CallOptions, as_dict, stub_command

Handler = Callable[[argparse.Namespace, pb_grpc.AdminServiceStub, CallOptions], int]


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "admin",
        help="manage callers, grants and tokens (admin role)",
        description="Manage callers, their grants and their tokens. Every change is audited and takes effect "
        "within one second. Needs a token (or certificate) of a caller holding the admin role.",
    )
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    _callers(
        groups.add_parser(
            "callers",
            help="add, disable, list, show callers",
            description="Add, disable, list and show callers.",
        )
    )
    _grants(
        groups.add_parser(
            "grants",
            help="set, revoke, show grants",
            description="Set, revoke and show what a caller may check (R8).",
        )
    )
    _tokens(
        groups.add_parser(
            "tokens",
            help="issue, revoke, list bearer tokens",
            description="Issue (shown once), revoke and list bearer tokens.",
        )
    )


def _command(actions: Subparsers, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
    return stub_command(actions, name, help_text, pb_grpc.AdminServiceStub, handler)


# -- callers ---------------------------------------------------------------------------


def _callers(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = _command(actions, "add", "add a caller", _callers_add)
    add.add_argument("caller_id", metavar="CALLER_ID")
    add.add_argument("--department", required=True, metavar="CODE", help="department code (departments.toml)")
    add.add_argument("--name", default="", help="display name")
    add.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        choices=sorted(ROLES),
        help="admin, auditor or reveal (repeatable)",
    )
    add.add_argument("--tls-identity", default="", metavar="CN", help="client certificate common name")
    add.add_argument("--json", action="store_true")
    disable = _command(actions, "disable", "disable a caller (its tokens stop working)", _callers_disable)
    disable.add_argument("caller_id", metavar="CALLER_ID")
    disable.add_argument("--json", action="store_true")
    listing = _command(actions, "list", "list callers", _callers_list)
    listing.add_argument("--all", action="store_true", help="include disabled callers")
    listing.add_argument("--json", action="store_true")
    show = _command(actions, "show", "show one caller", _callers_show)
    show.add_argument("caller_id", metavar="CALLER_ID")
    show.add_argument("--json", action="store_true")


def _print_caller(options: argparse.Namespace, caller: pb.CallerInfo) -> int:
    if options.json:
        print_json(as_dict(caller))
    else:
        roles = ",".join(caller.roles) or "-"
        state = "disabled" if caller.disabled else "active"
        grant = "grant" if caller.has_grant else "no grant"
        print(
            f"{caller.caller_id:20} {caller.department:16} {roles:20} {state:8} {grant:8} "
            f"{caller.tls_identity or ''}"
        )
    return EXIT_OK


def _callers_add(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    request = pb.CreateCallerRequest(
        caller_id=options.caller_id,
        name=options.name,
        department=options.department,
        roles=options.roles,
        tls_identity=options.tls_identity,
    )
    return _print_caller(options, admin.CreateCaller(request, **call))


def _callers_disable(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    return _print_caller(options, admin.DisableCaller(pb.CallerRef(caller_id=options.caller_id), **call))


def _callers_show(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    return _print_caller(options, admin.GetCaller(pb.CallerRef(caller_id=options.caller_id), **call))


def _callers_list(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    response = admin.ListCallers(pb.ListCallersRequest(include_disabled=options.all), **call)
    if options.json:
        print_json([as_dict(caller) for caller in response.callers])
        return EXIT_OK
    for caller in response.callers:
        _print_caller(options, caller)
    return EXIT_OK


# -- grants ----------------------------------------------------------------------------


def _grants(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    put = _command(actions, "set", "set (replace) a caller's grant", _grants_set)
    put.add_argument("caller_id", metavar="CALLER_ID")
    put.add_argument(
        "--matter",
        dest="matters",
        action="append",
        required=True,
        metavar="CODE",
        help="matter code, 'kind:<matter kind>' or '*' (repeatable)",
    )
    put.add_argument(
        "--subject-kind",
        dest="subject_kinds",
        action="append",
        choices=["organization", "person"],
        help="subject kinds (repeatable; default organization)",
    )
    put.add_argument(
        "--visible",
        dest="visible_fields",
        action="append",
        default=[],
        choices=sorted(VISIBLE_FIELDS),
        help="personal field shown unmasked (repeatable; default none)",
    )
    put.add_argument(
        "--purpose-required",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="every check must state a purpose (default yes)",
    )
    put.add_argument(
        "--authorization-ref-required",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="person lookups need an authorisation reference (default yes)",
    )
    put.add_argument(
        "--rate", type=float, default=50.0, metavar="PER_SECOND", help="rate limit (default 50/s)"
    )
    put.add_argument("--burst", type=int, default=100, help="burst (default 100)")
    put.add_argument(
        "--daily-person-quota", type=int, default=0, metavar="N", help="person lookups a day (default 0)"
    )
    put.add_argument(
        "--watch-streams",
        type=int,
        default=0,
        metavar="N",
        help=f"Watch streams open at once (default {DEFAULT_WATCH_STREAMS})",
    )
    put.add_argument("--valid-from", type=dt.date.fromisoformat, metavar="YYYY-MM-DD")
    put.add_argument("--valid-until", type=dt.date.fromisoformat, metavar="YYYY-MM-DD")
    put.add_argument("--json", action="store_true")
    revoke = _command(actions, "revoke", "revoke a caller's grant", _grants_revoke)
    revoke.add_argument("caller_id", metavar="CALLER_ID")
    revoke.add_argument("--json", action="store_true")
    show = _command(actions, "show", "show a caller's grant", _grants_show)
    show.add_argument("caller_id", metavar="CALLER_ID")
    show.add_argument("--json", action="store_true")


def _print_grant(options: argparse.Namespace, grant: pb.Grant) -> int:
    if options.json:
        print_json(as_dict(grant))
    elif not grant.active:
        print(f"{grant.caller_id}: no grant")
    else:
        print(f"caller          {grant.caller_id}")
        print(f"matters         {' '.join(grant.matters)}")
        print(f"subject kinds   {' '.join(grant.subject_kinds)}")
        print(f"visible fields  {' '.join(grant.visible_fields) or '(all personal data masked)'}")
        print(f"purpose         {'required' if grant.purpose_required else 'optional'}")
        persons = "required for persons" if grant.authorization_ref_required_for_persons else "no"
        print(f"authorisation   {persons}")
        print(f"rate            {grant.rate_per_second:g}/s, burst {grant.burst}")
        print(f"person quota    {grant.daily_person_quota} a day")
        print(f"watch streams   {grant.max_watch_streams} at once")
        if grant.HasField("valid_from") or grant.HasField("valid_until"):
            since = (
                shown_date(grant.valid_from.ToDatetime(tzinfo=dt.UTC))
                if grant.HasField("valid_from")
                else "(open)"
            )
            until = (
                shown_date(grant.valid_until.ToDatetime(tzinfo=dt.UTC))
                if grant.HasField("valid_until")
                else "(open)"
            )
            print(f"valid           {since} to {until}")
    return EXIT_OK


def _grants_set(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    grant = pb.Grant(
        caller_id=options.caller_id,
        matters=options.matters,
        subject_kinds=options.subject_kinds or ["organization"],
        visible_fields=options.visible_fields,
        purpose_required=options.purpose_required,
        authorization_ref_required_for_persons=options.authorization_ref_required,
        rate_per_second=options.rate,
        burst=options.burst,
        daily_person_quota=options.daily_person_quota,
        max_watch_streams=options.watch_streams,
    )
    cst = dt.timezone(dt.timedelta(hours=8))
    if options.valid_from:
        grant.valid_from.FromDatetime(dt.datetime.combine(options.valid_from, dt.time(), cst))
    if options.valid_until:
        grant.valid_until.FromDatetime(dt.datetime.combine(options.valid_until, dt.time(), cst))
    return _print_grant(options, admin.SetGrant(pb.SetGrantRequest(grant=grant), **call))


def _grants_revoke(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    return _print_grant(options, admin.RevokeGrant(pb.CallerRef(caller_id=options.caller_id), **call))


def _grants_show(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    return _print_grant(options, admin.GetGrant(pb.CallerRef(caller_id=options.caller_id), **call))


# -- tokens ----------------------------------------------------------------------------


def _tokens(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    issue = _command(actions, "issue", "issue a token (shown once)", _tokens_issue)
    issue.add_argument("caller_id", metavar="CALLER_ID")
    issue.add_argument("--ttl-days", type=int, default=0, metavar="DAYS", help="lifetime (default 90 days)")
    issue.add_argument("--label", default="", help="what the token is for")
    issue.add_argument("--out", type=Path, metavar="FILE", help="write the token to FILE (mode 0600) instead")
    issue.add_argument("--json", action="store_true")
    revoke = _command(actions, "revoke", "revoke a token", _tokens_revoke)
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    revoke.add_argument("--json", action="store_true")
    listing = _command(actions, "list", "list tokens (never the tokens themselves)", _tokens_list)
    listing.add_argument("--caller", default="", metavar="CALLER_ID")
    listing.add_argument("--json", action="store_true")


def _print_token(options: argparse.Namespace, token: pb.TokenInfo) -> int:
    if options.json:
        print_json(as_dict(token))
    else:
        state = "active" if token.active else ("revoked" if token.HasField("revoked_at") else "expired")
        print(
            f"{token.token_id:14} {token.caller_id:20} {state:8} "
            f"expires {shown_date(token.expires_at.ToDatetime(tzinfo=dt.UTC))} {token.label}"
        )
    return EXIT_OK


def _tokens_issue(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    request = pb.IssueTokenRequest(
        caller_id=options.caller_id, ttl_seconds=options.ttl_days * 86400, label=options.label
    )
    issued = admin.IssueToken(request, **call)
    if options.out:
        write_secret(options.out, issued.token)
        print(f"token {issued.info.token_id} for {issued.info.caller_id} written to {options.out}")
    elif options.json:
        print_json({"token": issued.token, "info": as_dict(issued.info)})
    else:
        print(issued.token)
    return EXIT_OK


def _tokens_revoke(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    return _print_token(options, admin.RevokeToken(pb.RevokeTokenRequest(token_id=options.token_id), **call))


def _tokens_list(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    response = admin.ListTokens(pb.ListTokensRequest(caller_id=options.caller), **call)
    if options.json:
        print_json([as_dict(token) for token in response.tokens])
        return EXIT_OK
    for token in response.tokens:
        _print_token(options, token)
    return EXIT_OK
