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
    SubjectKind,
)
from mustcheck.identifiers import IdentifierError, validate_subject

from .common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    Subparsers,
    UsageError,
    add_gateway_option,
    connection_from,
    fail,
    print_json,
    render_result,
    result_as_json,
)
from .rpc import exit_code_for, explained


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "check",
        help="check one subject for one matter",
        description="Check one subject (unified social credit code or citizen ID) for one approval matter. "
        "Exit codes: 0 answered, 2 invalid input, 3 gateway unavailable, 4 permission denied.",
    )
    parser.add_argument("subject", help="unified social credit code or citizen identity number")
    parser.add_argument("--matter", required=True, metavar="CODE", help="matter code from the query catalog")
    parser.add_argument("--purpose", default="", help="business purpose of the lookup")
    parser.add_argument(
        "--authorization-ref", default="", metavar="REF", help="authorisation reference (persons)"
    )
    parser.add_argument(
        "--kind", choices=[kind.value for kind in SubjectKind], help="subject kind, if ambiguous"
    )
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="deadline (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_gateway_option(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    kind = SubjectKind(options.kind) if options.kind else None
    checksum_error = _checksum_error(options.subject, kind)
    try:
        connection = connection_from(options)
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
            )
    except InvalidRequest as error:
        return fail(f"invalid input: {error.message}", EXIT_INVALID)
    except CheckUnavailable as error:
        if checksum_error is not None:
            # Only the gateway's legacy allow-list could have admitted this identifier.
            return fail(
                f"invalid input: {checksum_error.message} [{checksum_error.rule}] "
                f"(the gateway at {options.gateway}, which keeps the legacy allow-list, gave no answer)",
                EXIT_INVALID,
            )
        return fail(f"no answer from the gateway at {options.gateway}: {error.message}", EXIT_UNAVAILABLE)
    except (PermissionDenied, AuthenticationFailed) as error:
        return fail(f"not allowed: {explained(error)}", exit_code_for(error))
    except RateLimited as error:
        return fail(f"rate limited: {error.message}", EXIT_UNAVAILABLE)
    except MustCheckError as error:
        return fail(error.message, EXIT_FAILURE)
    if options.json:
        print_json(result_as_json(result))
    else:
        print(render_result(result))
    return EXIT_OK


def _checksum_error(subject: str, kind: SubjectKind | None) -> IdentifierError | None:
    """The local checksum failure the SDK leaves to the gateway, if any."""
    try:
        validate_subject(subject, kind=kind)
    except IdentifierError as error:
        return error if error.checksum_only else None
    return None
