"""What the commands share: exit codes, options, and printing a check result."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from mustcheck import CheckResult, EntryStatus, Measure, Membership, TLSConfig

from ..china_time import CHINA_STANDARD_TIME
from ..i18n import N_, _
from ..logs import configure_logging
from ..server import DEFAULT_LISTEN
from .names import beside, policy_names

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3
EXIT_DENIED = 4

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


TOKEN_FILE_VARIABLE = "MUSTCHECK_TOKEN_FILE"


def add_gateway_option(parser: argparse.ArgumentParser) -> None:
    """How a client command reaches the gateway: address, token, TLS."""
    group = parser.add_argument_group(_("connection"))
    group.add_argument(
        "--gateway",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=_("gateway address (default {address})").format(address=DEFAULT_LISTEN),
    )
    group.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help=_("file holding the bearer token (default: ${variable})").format(variable=TOKEN_FILE_VARIABLE),
    )
    group.add_argument(
        "--ca", type=Path, default=None, metavar="FILE", help=_("CA certificate: connect with TLS")
    )
    group.add_argument(
        "--cert", type=Path, default=None, metavar="FILE", help=_("client certificate (mutual TLS)")
    )
    group.add_argument("--key", type=Path, default=None, metavar="FILE", help=_("client certificate's key"))


@dataclass(frozen=True)
class Connection:
    target: str
    token: str | None
    tls: TLSConfig | None


class UsageError(Exception):
    """A command-line option is wrong (exit 2)."""


def connection_from(options: argparse.Namespace) -> Connection:
    token_file = options.token_file
    if token_file is None and os.environ.get(TOKEN_FILE_VARIABLE):
        token_file = Path(os.environ[TOKEN_FILE_VARIABLE])
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UsageError(
                _("cannot read the token file {path}: {reason}").format(
                    path=token_file, reason=error.strerror
                )
            ) from None
    tls = None
    if options.ca or options.cert or options.key:
        try:
            tls = TLSConfig.from_files(options.ca, options.cert, options.key)
        except (OSError, ValueError) as error:
            raise UsageError(_("TLS files: {error}").format(error=error)) from None
    return Connection(options.gateway, token, tls)


def add_policies_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policies",
        type=Path,
        default=None,
        metavar="DIR",
        help=_("policy folder (default: $MUSTCHECK_POLICIES, else the bundled policies/)"),
    )


def add_logging_options(parser: argparse.ArgumentParser, *, default_level: str) -> None:
    """``--log-level`` and ``--log-format``: operational logs are JSON lines on stderr unless a person
    asks for console output."""
    parser.add_argument(
        "--log-level",
        default=default_level,
        choices=["debug", "info", "warning", "error"],
        help=_("least severe operational log level shown (default {level})").format(level=default_level),
    )
    parser.add_argument(
        "--log-format",
        default="json",
        choices=["json", "console"],
        help=_("operational logs on stderr: JSON lines (default) or console text for a person"),
    )


def configure_logging_from(options: argparse.Namespace) -> None:
    configure_logging(level=options.log_level, json=options.log_format == "json")


def fail(message: str, code: int) -> int:
    """Print ``message`` (already in the active language) as the command's error; return ``code``."""
    print(f"mustcheck: {message}", file=sys.stderr)
    return code


def result_as_json(result: CheckResult) -> dict[str, Any]:
    return {
        "subject": result.subject,
        "subject_kind": result.subject_kind.value,
        "subject_name": result.subject_name,
        "matter": result.matter,
        "outcome": result.outcome.value,
        "memberships": [_membership_json(m) for m in result.memberships],
        "measures": [_measure_json(m) for m in result.measures],
        "green_channel": result.green_channel,
        "green_channel_reason": result.green_channel_reason or None,
        "data_complete_since": result.data_complete_since.isoformat() if result.data_complete_since else None,
        "human_review_required": result.human_review_required,
        "review_notice": result.review_notice,
        "legacy_code": result.legacy_code,
        "data_version": result.data_version,
        "checked_at": result.checked_at.isoformat(),
        "receipt": result.receipt.compact if result.receipt else None,
    }


def _membership_json(membership: Membership) -> dict[str, Any]:
    data: dict[str, Any] = {
        "entry_id": membership.entry_id,
        "list": membership.list.value,
        "memorandum": membership.memorandum_id,
        "memorandum_title": membership.memorandum_title,
        "initiating_department": membership.initiating_department,
        "status": membership.status.value,
        "in_force": membership.in_force,
        "severity": membership.severity,
        "decision_document": membership.decision_document,
        "decision_date": membership.decision_date.isoformat(),
        "effective_from": membership.effective_from.isoformat(),
        "punish_until": membership.punish_until.isoformat(),
        "display_until": membership.display_until.isoformat(),
    }
    if membership.via is not None:
        data["via"] = {
            "organization_code": membership.via.organization_code,
            "organization_name": membership.via.organization_name,
            "role": membership.via.role,
        }
    return data


def _measure_json(measure: Measure) -> dict[str, Any]:
    basis = measure.legal_basis
    return {
        "id": measure.id,
        "kind": measure.kind.value,
        "text": measure.text,
        "mandatory": measure.mandatory,
        "legal_basis": {"document": basis.document, "section": basis.section} if basis else None,
        "memorandum": measure.memorandum_id,
    }


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


_OUTCOME_LABEL = {
    "no_record": N_("no record"),
    "incentives": N_("incentives apply"),
    "restrictions": N_("restrictions apply"),
    "under_objection": N_("under objection — measures suspended"),
    "listed_no_measures": N_("listed — no measure for this matter that your department implements"),
}
# Shown instead of "no record" when entries are displayed that no longer count.
_NOTHING_IN_FORCE = N_("nothing in force — the entries below no longer count")
_GREEN_CHANNEL_REASON = {
    "bad_record": N_("no — a bad record in the last three years"),
    "data.not_attested": N_("no — the store attests no complete list data, so absence proves nothing (R6)"),
    "data.too_short": N_("no — the list data is complete for less than three years (R6)"),
}
_ENTRY_STATE = {
    "in_force": N_("in force"),
    "ended": N_("measures period ended"),
    "under_objection": N_("under objection"),
    "removed": N_("removed"),
    "repaired": N_("repaired"),
    "expired": N_("expired"),
}


def shown_time(instant: dt.datetime) -> str:
    """An instant for people: China Standard Time, the zone stated."""
    return instant.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M:%S CST (UTC+08:00)")


def shown_date(instant: dt.datetime) -> str:
    """A day for people: the China Standard Time date, the zone stated."""
    return instant.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d CST")


def shown_instant(text: str) -> str:
    """An ISO 8601 instant (with offset) from the gateway, for people; left as it is if it is none."""
    try:
        instant = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    return shown_time(instant) if instant.tzinfo is not None else text


def _green_channel_line(result: CheckResult) -> str:
    if result.green_channel:
        if result.data_complete_since:
            return _(
                "green channel yes — no bad record for three years (33号 §4) "
                "(list data complete since {date})"
            ).format(date=shown_date(result.data_complete_since))
        return _("green channel yes — no bad record for three years (33号 §4)")
    reason = _GREEN_CHANNEL_REASON.get(result.green_channel_reason, N_("no"))
    return _("green channel {reason}").format(reason=_(reason))


def _entry_state(membership: Membership) -> str:
    if membership.in_force:
        return _(_ENTRY_STATE["in_force"])
    if membership.status is EntryStatus.ACTIVE:
        return _(_ENTRY_STATE["ended"])
    status = membership.status.value
    return _(_ENTRY_STATE[status]) if status in _ENTRY_STATE else status.replace("_", " ")


def render_result(result: CheckResult) -> str:
    """A check's answer for people, in the active language, names beside codes."""
    names = policy_names()
    outcome = _(_OUTCOME_LABEL[result.outcome.value])
    if result.outcome.value == "no_record" and result.memberships:
        outcome = _(_NOTHING_IN_FORCE)
    kind = _(SUBJECT_KIND_LABEL.get(result.subject_kind.value, result.subject_kind.value))
    lines = [
        _("subject        {subject}  {name}  ({kind})").format(
            subject=result.subject, name=result.subject_name, kind=kind
        )
        + (_("  [legacy code]") if result.legacy_code else ""),
        _("matter         {matter}").format(matter=names.matter(result.matter)),
        _("outcome        {outcome}").format(outcome=outcome),
        _green_channel_line(result),
    ]
    for membership in result.memberships:
        via = ""
        if membership.via is not None:
            link = membership.via
            via = _("  via {name} {code} ({role})").format(
                name=link.organization_name, code=link.organization_code, role=link.role
            )
        department = (
            _("; initiated by {department}").format(
                department=names.department(membership.initiating_department)
            )
            if membership.initiating_department
            else ""
        )
        lines.append(
            "  "
            + _("{list}  {memorandum}  [{state}; decided {decided}, until {until}{department}]{via}").format(
                list=_(LIST_LABEL.get(membership.list.value, membership.list.value)),
                memorandum=beside(membership.memorandum_title, membership.memorandum_id),
                state=_entry_state(membership),
                decided=shown_date(membership.decision_date),
                until=shown_date(membership.punish_until),
                department=department,
                via=via,
            )
        )
    for measure in result.measures:
        tag = _("mandatory") if measure.mandatory else _("recommended")
        basis = f"  ({measure.legal_basis})" if measure.legal_basis else ""
        lines.append(f"  - {tag} {measure.id}: {measure.text}{basis}")
    if result.human_review_required:
        lines.append(f"  ! {result.review_notice}")
    lines.append(
        _("data version {version}, checked at {time}").format(
            version=result.data_version, time=shown_time(result.checked_at)
        )
    )
    if result.receipt is not None:
        lines.append(
            _("receipt        {receipt} (audit record {seq})").format(
                receipt=result.receipt.receipt_id, seq=result.receipt.audit_seq
            )
        )
    return "\n".join(lines)


SUBJECT_KIND_LABEL = {"organization": N_("organization"), "person": N_("person")}
LIST_LABEL = {"red": N_("red list"), "black": N_("black list")}


class DeprecatedAlias(argparse.Action):
    """Stores the value like ``store``; an old spelling among ``option_strings`` earns a warning on
    stderr naming the new one (the first spelling)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        self.old = tuple(kwargs.pop("old", ()))
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if option_string in self.old:
            print(
                _("mustcheck: {old} is deprecated here: use {new}").format(
                    old=option_string, new=self.option_strings[0]
                ),
                file=sys.stderr,
            )
        setattr(namespace, self.dest, values)
