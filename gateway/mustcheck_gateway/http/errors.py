"""A refused call as HTTP says it: a status mapped from the gRPC status, and a JSON body naming the
reason (docs/http.md).

``{"code": "<gRPC status name>", "reason": "REASON_…", "reasonCode": "<dotted code>", "message": "…"}``;
``Retry-After`` (whole seconds) on 429 and 503 where the gateway knows when to retry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import grpc
from aiohttp import web

from ..errors import REASON_METADATA_KEY, RETRY_AFTER_METADATA_KEY, reason_name

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}
# Refusals of the HTTP request itself, whose HTTP status says more than the gRPC status's.
HTTP_STATUS_BY_REASON: Mapping[str, int] = {
    "request.too_large": 413,
    "request.timeout": 408,
    "request.content_type": 415,
}
JSON_CONTENT_TYPE = "application/json"


def error_body(code: grpc.StatusCode, reason_code: str, message: str) -> dict[str, str]:
    return {
        "code": code.name,
        "reason": reason_name(reason_code),
        "reasonCode": reason_code,
        "message": message,
    }


def error_response(code: grpc.StatusCode, message: str, trailers: Mapping[str, str]) -> web.Response:
    """The HTTP answer to a call the pipeline refused with ``code`` and these trailing metadata."""
    reason_code = trailers.get(REASON_METADATA_KEY) or code.name.lower()
    status = HTTP_STATUS_BY_REASON.get(reason_code) or HTTP_STATUS.get(code, 500)
    headers: dict[str, str] = {}
    retry_after_ms = trailers.get(RETRY_AFTER_METADATA_KEY)
    if retry_after_ms and status in (429, 503) and retry_after_ms.isdigit():
        headers["Retry-After"] = str(max(1, math.ceil(int(retry_after_ms) / 1000)))
    return json_response(error_body(code, reason_code, message), status=status, headers=headers)


def json_response(
    body: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        headers=headers,
        content_type=JSON_CONTENT_TYPE,
        charset="utf-8",
    )
