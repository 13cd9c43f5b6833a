"""``mustcheck check SUBJECT --matter CODE``: one check through the SDK.

Exit codes: 0 answered, 2 invalid input, 3 gateway unavailable, 4 permission denied.
"""

from __future__ import annotations

import argparse

from mustcheck import (
    AuthenticationFailed,
    CheckUnavailable,
    Client,
    InvalidRequest,
    MustCheckError,
    PermissionDenied,
    RateLimited,
    Receipt,
    SubjectKind,
)
from mustcheck.identifiers import IdentifierError, validate_subject
from mustcheck.receipts import InvalidReceipt, parse_receipt

from ..i18n import _
from .common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    DeprecatedAlias,
    Subparsers,
    UsageError,
    add_gateway_option,
    connection_from,
    fail,
    print_json,
    render_result,
    result_as_json,
)
from .numbers import finite
from .reasons import explained, subject_error
from .rpc import exit_code_for


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "check",
        help=_("check one subject for one matter"),
        description=_(
            "Check one subject (unified social credit code or citizen ID) for one approval matter. "
            "Exit codes: 0 answered, 2 invalid input, 3 gateway unavailable, 4 permission denied."
        ),
    )
    parser.add_argument("subject", help=_("unified social credit code or citizen identity number"))
    parser.add_argument(
        "--matter", required=True, metavar="CODE", help=_("matter code from the query catalog")
    )
    parser.add_argument("--purpose", default="", help=_("business purpose of the lookup"))
    parser.add_argument(
        "--authorization-ref", default="", metavar="REF", help=_("authorisation reference (persons)")
    )
    parser.add_argument(
        "--subject-kind",
        "--kind",
        action=DeprecatedAlias,
        old=["--kind"],  # one meaning per flag: `audit query` once used --kind for the record's kind
        dest="kind",
        choices=[kind.value for kind in SubjectKind],
        help=_("subject kind, if ambiguous (--kind is a deprecated alias)"),
    )
    parser.add_argument(
        "--timeout",
        type=finite(0.0, 3600.0, above_least=True),
        default=5.0,
        metavar="SECONDS",
        help=_("deadline (default 5)"),
    )
    parser.add_argument(
        "--replay-of",
        metavar="RECEIPT|REF",
        help=_(
            "auditors: replay the audited check a receipt (or a record reference LOG-SEQ) names, as its "
            "caller's department with the policy set then in force"
        ),
    )
    parser.add_argument("--json", action="store_true", help=_("print one JSON object"))
    add_gateway_option(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    kind = SubjectKind(options.kind) if options.kind else None
    checksum_error = _checksum_error(options.subject, kind)
    try:
        connection = connection_from(options)
        replay_of = _replay_of(options.replay_of)
    except UsageError as error:
        return fail(str(error), EXIT_INVALID)
    try:
        with Client(
            connection.target, token=connection.token, tls=connection.tls, timeout=options.timeout
        ) as client:
            result = client.check(
                options.subject,
                options.matter,
                purpose=options.purpose,
                authorization_ref=options.authorization_ref,
                subject_kind=kind,
                replay_of=replay_of,
            )
    except InvalidRequest as error:
        return fail(_("invalid input: {message}").format(message=subject_error(error)), EXIT_INVALID)
    except CheckUnavailable as error:
        if checksum_error is not None:
            # Only the gateway's legacy allow-list could have admitted this identifier.
            return fail(
                _(
                    "invalid input: {message} [{rule}] (the gateway at {gateway}, which keeps the legacy "
                    "allow-list, gave no answer)"
                ).format(message=checksum_error.message, rule=checksum_error.rule, gateway=options.gateway),
                EXIT_INVALID,
            )
        return fail(
            _("no answer from the gateway at {gateway}: {message}").format(
                gateway=options.gateway, message=explained(error)
            ),
            EXIT_UNAVAILABLE,
        )
    except (PermissionDenied, AuthenticationFailed) as error:
        return fail(_("not allowed: {message}").format(message=explained(error)), exit_code_for(error))
    except RateLimited as error:
        return fail(_("rate limited: {message}").format(message=explained(error)), EXIT_UNAVAILABLE)
    except MustCheckError as error:
        return fail(explained(error), EXIT_FAILURE)
    if options.json:
        print_json(result_as_json(result))
    else:
        print(render_result(result))
    return EXIT_OK


def _replay_of(text: str | None) -> Receipt | str | None:
    """A receipt (its record is replayed) or a record reference, as given."""
    if text is None:
        return None
    text = text.strip()
    if not text.startswith("mcr"):
        return text
    try:
        return parse_receipt(text)
    except InvalidReceipt as error:
        raise UsageError(_("--replay-of: not a receipt: {message}").format(message=error)) from None


def _checksum_error(subject: str, kind: SubjectKind | None) -> IdentifierError | None:
    """The local checksum failure the SDK leaves to the gateway, if any."""
    try:
        validate_subject(subject, kind=kind)
    except IdentifierError as error:
        return error if error.checksum_only else None
    return None
