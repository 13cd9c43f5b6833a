"""An HTTP request's body as the RPC's request message, or the refusal to answer it with.

What a caller sends costs the gateway little before it is refused: the body is read up to
:data:`..bounds.MAX_RECEIVE_BYTES` and no further, within :data:`BODY_TIMEOUT_S`; it is parsed as JSON
in C, and its values are counted (at most :data:`MAX_JSON_VALUES`) before protobuf's JSON mapping, which
converts value by value in Python, sees it; a large body is converted off the event loop, so that gRPC
calls and other HTTP calls go on meanwhile. Each refusal is an :class:`..interceptors.Undecodable` that
the pipeline's malformed-request step answers and audits once.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from ..bounds import MAX_RECEIVE_BYTES
from ..errors import GatewayError, InvalidArgument, ResourceExhausted
from ..interceptors import Undecodable
from .errors import JSON_CONTENT_TYPE

_CHUNK = 64 * 1024
# A body must arrive within this time: a client trickling bytes holds no buffer open for long.
BODY_TIMEOUT_S = 30.0
# JSON values (array items and object members, all levels) in one body. The largest request, a batch of
# 1,000 subjects each with its kind, holds about 2,000; a batch over 1,000 subjects is still read, and
# refused by the check service as on gRPC (batch.too_large), up to this many.
MAX_JSON_VALUES = 20_000
# Bodies larger than this are converted in a worker thread.
OFF_LOOP_BYTES = 64 * 1024


class _Refused(Exception):
    def __init__(self, refusal: GatewayError) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


async def decode(request: web.Request, request_type: type[Message]) -> Message | Undecodable:
    """The request message, or the refusal that the pipeline's malformed-request step answers."""
    try:
        body = await _body(request)
        if len(body) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(_message, body, request_type)
        return _message(body, request_type)
    except _Refused as refused:
        return Undecodable(refused.refusal)


async def _body(request: web.Request) -> bytes:
    declared = request.content_length
    if declared is not None and declared > MAX_RECEIVE_BYTES:
        raise _Refused(_too_large(f"{declared:,} bytes"))
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            body = await _read(request)
    except TimeoutError:
        raise _Refused(
            InvalidArgument(f"the body did not arrive within {BODY_TIMEOUT_S:g} s", reason="request.timeout")
        ) from None
    if body is None:
        raise _Refused(_too_large(f"over {MAX_RECEIVE_BYTES:,} bytes"))
    if not body:
        return b"{}"  # an empty body is the empty message (ReceiptKeys needs nothing else)
    charset = (request.charset or "utf-8").lower()
    if request.content_type != JSON_CONTENT_TYPE or charset not in ("utf-8", "utf8"):
        shown = request.headers.get("Content-Type", "")[:64]
        raise _Refused(
            InvalidArgument(
                f"the body must be JSON (Content-Type: application/json, UTF-8); got {shown!r}",
                reason="request.content_type",
            )
        )
    return body


async def _read(request: web.Request) -> bytes | None:
    """The body, or None once it passes the bound (what is past it is never read into memory)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > MAX_RECEIVE_BYTES:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _message(body: bytes, request_type: type[Message]) -> Message:
    name = request_type.DESCRIPTOR.full_name
    try:
        data = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_object,
            parse_constant=_not_json_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, nested past the C parser's limit
        raise _Refused(_malformed(f"the body is not JSON: {_first_line(error)}")) from None
    if not isinstance(data, dict):
        raise _Refused(_malformed(f"the body must be a JSON object (a {name}), not a JSON {_kind(data)}"))
    if _values_over(data, MAX_JSON_VALUES):
        raise _Refused(
            ResourceExhausted(
                f"the body holds more than {MAX_JSON_VALUES:,} JSON values (array items and object "
                "members); the gateway accepts at most that many",
                reason="request.too_large",
            )
        )
    message = request_type()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False, max_recursion_depth=32)
    except (
        json_format.ParseError,
        ValueError,
        OverflowError,
        RecursionError,
        TypeError,
        AttributeError,
    ) as error:
        raise _Refused(
            _malformed(f"the body is not a {name} in protobuf's JSON mapping: {_first_line(error)}")
        ) from None
    return message


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose member names are unique. RFC 8259 leaves a repeated name's meaning to the
    reader (Python keeps the last, many proxies and firewalls the first): two readers of one body could
    see two different requests, so a repeated name is refused."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the member name {key[:64]!r} appears twice in one object")
            seen.add(key)
    return data


def _not_json_constant(text: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity``: Python's reader accepts them, JSON has no such values."""
    raise ValueError(f"{text} is not a JSON value")


def _finite_float(text: str) -> float:
    """A number with a fraction or an exponent, refused where it overflows to infinity (``1e400``)."""
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"the number {text[:32]} is out of range")
    return value


def _kind(data: Any) -> str:
    return {list: "array", str: "string", bool: "true or false", type(None): "null"}.get(type(data), "number")


def _values_over(data: Any, limit: int) -> bool:
    """Whether ``data`` holds more than ``limit`` values (counted without walking past the limit)."""
    pending = [data]
    seen = 0
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            seen += len(value)
            if seen > limit:
                return True
            pending.extend(value.values())
        elif isinstance(value, list):
            seen += len(value)
            if seen > limit:
                return True
            pending.extend(value)
    return False


def _malformed(message: str) -> GatewayError:
    return InvalidArgument(message, reason="request.malformed")


def _too_large(size: str) -> GatewayError:
    return ResourceExhausted(
        f"the body is {size}; the gateway accepts at most {MAX_RECEIVE_BYTES:,} bytes",
        reason="request.too_large",
    )


def _first_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]
