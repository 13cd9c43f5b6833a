"""``mustcheck admin callers|grants|tokens …``: who may query what (admin role)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path

from mustcheck._generated.v1 import admin_pb2 as pb
from mustcheck._generated.v1 import admin_pb2_grpc as pb_grpc

from ..auth.model import DEFAULT_WATCH_STREAMS, ROLES, VISIBLE_FIELDS
from ..bootstrap import write_secret
from ..china_time import CHINA_STANDARD_TIME
from ..i18n import _
from .common import EXIT_INVALID, EXIT_OK, Subparsers, fail, print_json, shown_date
from .dates import day, day_help
from .names import policy_names
from .numbers import finite
from .rpc import CallOptions, as_dict, stub_command

Handler = Callable[[argparse.Namespace, pb_grpc.AdminServiceStub, CallOptions], int]


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "admin",
        help=_("manage callers, grants and tokens (admin role)"),
        description=_(
            "Manage callers, their grants and their tokens. Every change is audited and takes effect "
            "within one second. Needs a token (or certificate) of a caller holding the admin role."
        ),
    )
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    _callers(
        groups.add_parser(
            "callers",
            help=_("add, disable, list, show callers"),
            description=_("Add, disable, list and show callers."),
        )
    )
    _grants(
        groups.add_parser(
            "grants",
            help=_("set, update, revoke, show grants"),
            description=_("Set, update, revoke and show what a caller may check (R8)."),
        )
    )
    _tokens(
        groups.add_parser(
            "tokens",
            help=_("issue, revoke, list bearer tokens"),
            description=_("Issue (shown once), revoke and list bearer tokens."),
        )
    )


def _command(actions: Subparsers, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
    return stub_command(actions, name, help_text, pb_grpc.AdminServiceStub, handler)


# -- callers ---------------------------------------------------------------------------


def _callers(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = _command(actions, "add", _("add a caller"), _callers_add)
    add.add_argument("caller_id", metavar="CALLER_ID")
    add.add_argument(
        "--department", required=True, metavar="CODE", help=_("department code (departments.toml)")
    )
    add.add_argument("--name", default="", help=_("display name"))
    add.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        choices=sorted(ROLES),
        help=_("admin, auditor or reveal (repeatable)"),
    )
    add.add_argument(
        "--tls-identity",
        default="",
        metavar="CN",
        help=_(
            "client certificate common name; the caller must then present that certificate on every call "
            "(its token alone is refused), so bind no caller behind a TLS terminator"
        ),
    )
    add.add_argument("--json", action="store_true")
    disable = _command(actions, "disable", _("disable a caller (its tokens stop working)"), _callers_disable)
    disable.add_argument("caller_id", metavar="CALLER_ID")
    disable.add_argument("--json", action="store_true")
    listing = _command(actions, "list", _("list callers"), _callers_list)
    listing.add_argument("--all", action="store_true", help=_("include disabled callers"))
    listing.add_argument("--json", action="store_true")
    show = _command(actions, "show", _("show one caller"), _callers_show)
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
    put = _command(actions, "set", _("set (replace) a caller's grant; shows what changed"), _grants_set)
    put.add_argument("caller_id", metavar="CALLER_ID")
    _grant_options(put, replace=True)
    update = _command(
        actions,
        "update",
        _("change only the named fields of a caller's grant; shows what changed"),
        _grants_update,
    )
    update.add_argument("caller_id", metavar="CALLER_ID")
    _grant_options(update, replace=False)
    revoke = _command(actions, "revoke", _("revoke a caller's grant"), _grants_revoke)
    revoke.add_argument("caller_id", metavar="CALLER_ID")
    revoke.add_argument("--json", action="store_true")
    show = _command(actions, "show", _("show a caller's grant"), _grants_show)
    show.add_argument("caller_id", metavar="CALLER_ID")
    show.add_argument("--json", action="store_true")


def _grant_options(parser: argparse.ArgumentParser, *, replace: bool) -> None:
    """The grant's fields: ``set`` takes defaults for what is not named, ``update`` keeps it."""

    def default(value: object) -> object:
        return value if replace else None

    parser.add_argument(
        "--matter",
        dest="matters",
        action="append",
        required=replace,
        metavar="CODE",
        help=_("matter code, 'kind:<matter kind>' or '*' (repeatable)"),
    )
    parser.add_argument(
        "--subject-kind",
        dest="subject_kinds",
        action="append",
        choices=["organization", "person"],
        help=_("subject kinds (repeatable; default organization)"),
    )
    parser.add_argument(
        "--visible",
        dest="visible_fields",
        action="append",
        default=default([]),
        choices=sorted(VISIBLE_FIELDS),
        help=_("personal field shown unmasked (repeatable; default none)"),
    )
    parser.add_argument(
        "--purpose-required",
        action=argparse.BooleanOptionalAction,
        default=default(True),
        help=_("every check must state a purpose (default yes)"),
    )
    parser.add_argument(
        "--authorization-ref-required",
        action=argparse.BooleanOptionalAction,
        default=default(True),
        help=_("person lookups need an authorisation reference (default yes)"),
    )
    parser.add_argument(
        "--rate",
        type=finite(0.0, 1_000_000.0, above_least=True),
        default=default(50.0),
        metavar="PER_SECOND",
        help=_("rate limit (default 50/s)"),
    )
    parser.add_argument("--burst", type=int, default=default(100), help=_("burst (default 100)"))
    parser.add_argument(
        "--daily-person-quota",
        type=int,
        default=default(0),
        metavar="N",
        help=_("person lookups a day (default 0)"),
    )
    parser.add_argument(
        "--watch-streams",
        type=int,
        default=default(0),
        metavar="N",
        help=_("Watch streams open at once (default {count})").format(count=DEFAULT_WATCH_STREAMS),
    )
    parser.add_argument(
        "--valid-from", type=day, metavar="YYYY-MM-DD", help=day_help(_("first day the grant is valid"))
    )
    parser.add_argument(
        "--valid-until",
        type=day,
        metavar="YYYY-MM-DD",
        help=day_help(_("day the grant ends (00:00 China Standard Time)")),
    )
    parser.add_argument("--json", action="store_true")


# Each option's field in the Grant message (None: not named on the command line, under `update`).
_GRANT_FIELDS = {
    "matters": "matters",
    "subject_kinds": "subject_kinds",
    "visible_fields": "visible_fields",
    "purpose_required": "purpose_required",
    "authorization_ref_required": "authorization_ref_required_for_persons",
    "rate": "rate_per_second",
    "burst": "burst",
    "daily_person_quota": "daily_person_quota",
    "watch_streams": "max_watch_streams",
}


def _apply(options: argparse.Namespace, grant: pb.Grant) -> pb.Grant:
    """``grant`` with every field named in ``options`` set to it."""
    for option, name in _GRANT_FIELDS.items():
        value = getattr(options, option)
        if value is None:
            continue
        if isinstance(value, list):
            del getattr(grant, name)[:]
            getattr(grant, name).extend(value)
        else:
            setattr(grant, name, value)
    for option in ("valid_from", "valid_until"):
        day_value = getattr(options, option)
        if day_value is not None:
            getattr(grant, option).FromDatetime(
                dt.datetime.combine(day_value, dt.time(), CHINA_STANDARD_TIME)
            )
    return grant


def _shown_field(grant: pb.Grant, name: str) -> str:
    if name in ("valid_from", "valid_until"):
        given = grant.HasField("valid_from") if name == "valid_from" else grant.HasField("valid_until")
        return shown_date(getattr(grant, name).ToDatetime(tzinfo=dt.UTC)) if given else "-"
    value = getattr(grant, name)
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    return " ".join(value) or "-"


def grant_changes(before: pb.Grant, after: pb.Grant) -> list[str]:
    """One line per field that differs: ``name  before → after``."""
    names = [*_GRANT_FIELDS.values(), "valid_from", "valid_until"]
    lines = []
    for name in names:
        old = _shown_field(before, name) if before.active else "-"
        new = _shown_field(after, name)
        if old != new:
            lines.append(f"  {name:40} {old} → {new}")
    return lines


def _print_changes(options: argparse.Namespace, before: pb.Grant, after: pb.Grant) -> None:
    changes = grant_changes(before, after)
    if not before.active:
        heading = _("new grant for {caller} (it had none):")
    elif changes:
        heading = _("changes to {caller}'s grant:")
    else:
        heading = _("{caller}'s grant is unchanged")
    out = sys.stderr if options.json else sys.stdout
    print(heading.format(caller=after.caller_id), file=out)
    for line in changes:
        print(line, file=out)


def _print_grant(options: argparse.Namespace, grant: pb.Grant) -> int:
    if options.json:
        print_json(as_dict(grant))
    elif not grant.active:
        print(_("{caller}: no grant").format(caller=grant.caller_id))
    else:
        names = policy_names()
        print(_("caller          {caller}").format(caller=grant.caller_id))
        matters = " ".join(names.matter(matter) for matter in grant.matters)
        print(_("matters         {matters}").format(matters=matters))
        print(_("subject kinds   {kinds}").format(kinds=" ".join(grant.subject_kinds)))
        visible = " ".join(grant.visible_fields) or _("(all personal data masked)")
        print(_("visible fields  {fields}").format(fields=visible))
        purpose = _("required") if grant.purpose_required else _("optional")
        print(_("purpose         {purpose}").format(purpose=purpose))
        persons = _("required for persons") if grant.authorization_ref_required_for_persons else _("no")
        print(_("authorisation   {persons}").format(persons=persons))
        print(
            _("rate            {rate}/s, burst {burst}").format(
                rate=f"{grant.rate_per_second:g}", burst=grant.burst
            )
        )
        print(_("person quota    {quota} a day").format(quota=grant.daily_person_quota))
        print(_("watch streams   {streams} at once").format(streams=grant.max_watch_streams))
        if grant.HasField("valid_from") or grant.HasField("valid_until"):
            since = (
                shown_date(grant.valid_from.ToDatetime(tzinfo=dt.UTC))
                if grant.HasField("valid_from")
                else _("(open)")
            )
            until = (
                shown_date(grant.valid_until.ToDatetime(tzinfo=dt.UTC))
                if grant.HasField("valid_until")
                else _("(open)")
            )
            print(_("valid           {since} to {until}").format(since=since, until=until))
    return EXIT_OK


def _grants_set(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    before = admin.GetGrant(pb.CallerRef(caller_id=options.caller_id), **call)
    grant = _apply(options, pb.Grant(caller_id=options.caller_id, subject_kinds=["organization"]))
    after = admin.SetGrant(pb.SetGrantRequest(grant=grant), **call)
    _print_changes(options, before, after)
    return _print_grant(options, after)


def _grants_update(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    before = admin.GetGrant(pb.CallerRef(caller_id=options.caller_id), **call)
    if not before.active:
        return fail(
            _("{caller} has no grant to update: give it one with `admin grants set`").format(
                caller=options.caller_id
            ),
            EXIT_INVALID,
        )
    grant = pb.Grant()
    grant.CopyFrom(before)
    grant.ClearField("active")
    after = admin.SetGrant(pb.SetGrantRequest(grant=_apply(options, grant)), **call)
    _print_changes(options, before, after)
    return _print_grant(options, after)


def _grants_revoke(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    return _print_grant(options, admin.RevokeGrant(pb.CallerRef(caller_id=options.caller_id), **call))


def _grants_show(options: argparse.Namespace, admin: pb_grpc.AdminServiceStub, call: CallOptions) -> int:
    return _print_grant(options, admin.GetGrant(pb.CallerRef(caller_id=options.caller_id), **call))


# -- tokens ----------------------------------------------------------------------------


def _tokens(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    issue = _command(actions, "issue", _("issue a token (shown once)"), _tokens_issue)
    issue.add_argument("caller_id", metavar="CALLER_ID")
    issue.add_argument(
        "--ttl-days", type=int, default=0, metavar="DAYS", help=_("lifetime (default 90 days)")
    )
    issue.add_argument("--label", default="", help=_("what the token is for"))
    issue.add_argument(
        "--out", type=Path, metavar="FILE", help=_("write the token to FILE (mode 0600) instead")
    )
    issue.add_argument("--json", action="store_true")
    revoke = _command(actions, "revoke", _("revoke a token"), _tokens_revoke)
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    revoke.add_argument("--json", action="store_true")
    listing = _command(actions, "list", _("list tokens (never the tokens themselves)"), _tokens_list)
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
        print(
            _("token {token} for {caller} written to {path}").format(
                token=issued.info.token_id, caller=issued.info.caller_id, path=options.out
            )
        )
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
