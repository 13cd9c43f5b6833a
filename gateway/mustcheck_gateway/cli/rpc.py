"""Calling the admin and audit services from the command line: one channel, one error mapping."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from mustcheck import (
    AuthenticationFailed,
    CheckUnavailable,
    InvalidRequest,
    MustCheckError,
    PermissionDenied,
    RateLimited,
)
from mustcheck._channel import auth_metadata, sync_channel
from mustcheck._errors import explain_transport, from_rpc_error

from ..i18n import _
from .common import (
    EXIT_DENIED,
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    Subparsers,
    UsageError,
    add_gateway_option,
    connection_from,
    fail,
)
from .reasons import explained

T = TypeVar("T")
RPC_TIMEOUT = 30.0


class CallOptions(TypedDict):
    timeout: float
    metadata: tuple[tuple[str, str], ...]


class CommandFailed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# Refusals that a corrected command line fixes (input, not rights): exit 2, naming the option.
INPUT_REFUSALS = frozenset({"grant.purpose", "grant.authorization_ref"})


def exit_code_for(error: MustCheckError) -> int:
    if isinstance(error, InvalidRequest) or error.reason in INPUT_REFUSALS:
        return EXIT_INVALID
    if isinstance(error, PermissionDenied | AuthenticationFailed):
        return EXIT_DENIED
    if isinstance(error, CheckUnavailable | RateLimited):
        return EXIT_UNAVAILABLE
    return EXIT_FAILURE


@contextmanager
def stub(
    options: argparse.Namespace, factory: Callable[[grpc.Channel], T]
) -> Iterator[tuple[T, CallOptions]]:
    """A stub and the call keywords (deadline, token) for one command; errors become exit codes."""
    try:
        connection = connection_from(options)
    except UsageError as error:
        raise CommandFailed(fail(str(error), EXIT_INVALID)) from None
    channel = sync_channel(connection.target, connection.tls)
    try:
        yield factory(channel), CallOptions(timeout=RPC_TIMEOUT, metadata=auth_metadata(connection.token))
    except grpc.RpcError as raw:
        mapped = explain_transport(
            from_rpc_error(raw),
            tls=connection.tls is not None,
            client_certificate=connection.tls is not None and connection.tls.cert is not None,
        )
        raise CommandFailed(fail(explained(mapped), exit_code_for(mapped))) from None
    finally:
        channel.close()


def run_with_stub(
    options: argparse.Namespace,
    factory: Callable[[grpc.Channel], T],
    handler: Callable[[argparse.Namespace, T, CallOptions], int],
) -> int:
    """Run one command's ``handler`` with a stub; a failed call becomes its exit code."""
    try:
        with stub(options, factory) as (service, call):
            return handler(options, service, call)
    except CommandFailed as failed:
        return failed.code


def stub_command(
    actions: Subparsers,
    name: str,
    text: str,
    factory: Callable[[grpc.Channel], T],
    handler: Callable[[argparse.Namespace, T, CallOptions], int],
) -> argparse.ArgumentParser:
    """A sub-command that takes the gateway options and runs ``handler`` with a stub made by ``factory``."""
    parser = actions.add_parser(name, help=text, description=text)
    add_gateway_option(parser)
    parser.set_defaults(run=lambda options: run_with_stub(options, factory, handler))
    return parser


def write_text_chunks(chunks: Iterable[Any], out: Path | None) -> None:
    """Stream ``chunk.data`` to standard output, or to ``out`` whole or not at all (via a .partial file)."""
    if out is None:
        for chunk in chunks:
            sys.stdout.write(chunk.data)
        return
    temporary = out.with_name(out.name + ".partial")
    with temporary.open("w", encoding="utf-8", newline="") as handle:
        for chunk in chunks:
            handle.write(chunk.data)
    temporary.replace(out)
    print(_("exported to {path}").format(path=out), file=sys.stderr)


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
