"""``mustcheck receipts verify|keys``: check a receipt offline; fetch the gateway's receipt keys."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mustcheck import Client, InvalidReceipt, MustCheckError, verify_receipt
from mustcheck.receipts import load_public_keys

from ..bounds import TEXT_LIMITS
from ..i18n import _
from .common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    Subparsers,
    UsageError,
    add_gateway_option,
    connection_from,
    fail,
    print_json,
    shown_time,
)
from .rpc import exit_code_for

EXIT_BAD_RECEIPT = 1


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "receipts",
        help=_("verify receipts offline; fetch the gateway's receipt keys"),
        description=_(
            "Receipts (R11) are the gateway's signed word that a check happened. They verify offline "
            "with the gateway's public keys."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help=_("verify a receipt: exit 0 valid, 1 invalid (saying why)"),
        description=_("Verify a receipt with no gateway: exit 0 valid, 1 invalid (saying why)."),
    )
    verify.add_argument(
        "receipt",
        metavar="RECEIPT",
        help=_("the compact receipt (mcr2.… or mcr1.…), or a file holding it (@FILE, or FILE)"),
    )
    verify.add_argument(
        "--public-keys",
        type=Path,
        required=True,
        metavar="FILE|DIR",
        help=_("JSON {key_id: PEM} (from `receipts keys`) or a directory of <key_id>.pem"),
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=run_verify)
    keys = actions.add_parser(
        "keys",
        help=_("fetch the gateway's receipt keys (current and past)"),
        description=_("Fetch the gateway's receipt verification keys as JSON {key_id: PEM}."),
    )
    keys.add_argument("--out", type=Path, metavar="FILE", help=_("default: standard output"))
    add_gateway_option(keys)
    keys.set_defaults(run=run_keys)


MOST_RECEIPT_CHARACTERS = TEXT_LIMITS["receipt"]  # the gateway's own bound on a receipt it is sent


def _receipt_text(argument: str) -> str:
    """The receipt an argument gives: its text, or the content of ``@FILE`` (or of FILE, where the
    argument is no receipt's text and names a file), read no further than a receipt's bound."""
    if argument.startswith("@"):
        path = Path(argument[1:])
    elif argument.startswith("mcr"):
        return argument
    elif Path(argument).is_file():
        path = Path(argument)
    else:
        raise ValueError(
            _("{argument!r} is neither a receipt (mcr2.…) nor a file").format(argument=argument[:64])
        )
    try:
        with path.open("rb") as file:
            content = file.read(MOST_RECEIPT_CHARACTERS + 3)
    except OSError as error:
        raise ValueError(
            _("cannot read the receipt file {path}: {reason}").format(path=path, reason=error.strerror)
        ) from None
    try:
        # The file's line break is not part of the receipt, whose one spelling has no white space.
        text = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(_("{path}: not UTF-8 text, so no receipt").format(path=path)) from None
    if len(text) > MOST_RECEIPT_CHARACTERS:
        raise ValueError(
            _("{path}: over {most:,} characters, longer than any receipt").format(
                path=path, most=MOST_RECEIPT_CHARACTERS
            )
        )
    return text


def run_verify(options: argparse.Namespace) -> int:
    try:
        text = _receipt_text(options.receipt)
    except ValueError as error:
        return fail(str(error), EXIT_INVALID)
    try:
        public_keys = load_public_keys(options.public_keys)
    except (OSError, ValueError) as error:
        return fail(_("cannot read: {error}").format(error=error), EXIT_INVALID)
    try:
        receipt = verify_receipt(text, public_keys)
    except InvalidReceipt as error:
        if options.json:
            print_json({"valid": False, "reason": error.message})
        else:
            print(_("INVALID: {reason}").format(reason=error.message))
        return EXIT_BAD_RECEIPT
    if options.json:
        print_json(
            {
                "valid": True,
                "receipt_id": receipt.receipt_id,
                "caller": receipt.caller,
                "matter": receipt.matter,
                "subject_hash": receipt.subject_hash,
                "outcome": receipt.outcome,
                "measures": list(receipt.measure_ids),
                "data_version": receipt.data_version,
                "issued_at": receipt.issued_at.isoformat(),
                "audit_seq": receipt.audit_seq,
                "key_id": receipt.key_id,
            }
        )
    else:
        print(
            _(
                "valid: receipt {receipt} — caller {caller}, matter {matter}, outcome {outcome}, "
                "data version {version}, issued {issued}, audit record {seq}, key {key}"
            ).format(
                receipt=receipt.receipt_id,
                caller=receipt.caller,
                matter=receipt.matter,
                outcome=receipt.outcome,
                version=receipt.data_version,
                issued=shown_time(receipt.issued_at),
                seq=receipt.audit_seq,
                key=receipt.key_id,
            )
        )
    return EXIT_OK


def run_keys(options: argparse.Namespace) -> int:
    try:
        connection = connection_from(options)
        with Client(connection.target, token=connection.token, tls=connection.tls) as client:
            keys = {key_id: pem.decode() for key_id, pem in client.receipt_keys().items()}
    except UsageError as error:
        return fail(str(error), EXIT_INVALID)
    except MustCheckError as error:
        return fail(error.message, exit_code_for(error))
    text = json.dumps(keys, indent=2, sort_keys=True)
    if options.out:
        options.out.write_text(text + "\n", encoding="utf-8")
        print(_("{count} key(s) written to {path}").format(count=len(keys), path=options.out))
    else:
        print(text)
    return EXIT_OK if keys else EXIT_FAILURE
