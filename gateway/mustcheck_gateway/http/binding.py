"""The HTTP routes: ``POST /v1/<Rpc>`` through the shared pipeline, ``GET /openapi.json``, ``GET /healthz``.

A request body is the RPC's request message in protobuf's JSON mapping (both field spellings; unknown
fields refused); an answer is the response message in that mapping (lowerCamelCase names, fields with
default values written out). A body that cannot be read as the request (:mod:`.decode`: not JSON, an
unknown field, a wrong type, a wrong content type, too large, too slow) is refused by the pipeline's
malformed-request step, so that it is audited once, as gRPC's undecodable messages are.
Nothing a caller sends can make the answer a stack trace: an unexpected failure is a 500 with a
reference for the operators' log.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import grpc
import structlog
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from ..bounds import MAX_RECEIVE_BYTES
from .context import METADATA_HEADERS, HttpAbort, HttpCallContext, certificate_common_name, grpc_peer
from .decode import decode
from .errors import JSON_CONTENT_TYPE, error_body, error_response, json_response
from .pipeline import HTTP_METHODS, CallPipeline

log = structlog.get_logger("mustcheck.gateway")

OPENAPI_RESOURCE = "openapi.json"


class _Health:
    """The gateway's gRPC health servicer, asked for the whole server's status."""

    def __init__(self, servicer: Any) -> None:
        self.servicer = servicer

    async def serving(self) -> bool:
        if self.servicer is None:
            return True
        context = HttpCallContext(peer="", common_name=None)
        answer = await self.servicer.Check(health_pb2.HealthCheckRequest(service=""), context)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def openapi_document() -> bytes:
    """The committed OpenAPI document (scripts/generate_openapi.py writes it from the proto)."""
    return resources.files(__package__).joinpath(OPENAPI_RESOURCE).read_bytes()


def make_app(pipeline: CallPipeline, health_servicer: Any = None) -> web.Application:
    app = web.Application(client_max_size=MAX_RECEIVE_BYTES + 1, middlewares=[_no_stack_traces])
    document = openapi_document()
    health = _Health(health_servicer)

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type=JSON_CONTENT_TYPE, charset="utf-8")

    async def healthz(request: web.Request) -> web.Response:
        serving = await health.serving()
        return json_response(
            {"status": "SERVING" if serving else "NOT_SERVING"}, status=200 if serving else 503
        )

    app.on_response_prepare.append(_plain_server_header)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    for method in HTTP_METHODS:
        app.router.add_post(f"/v1/{method}", _rpc(pipeline, method))
    return app


async def _plain_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """No library or Python version in the answers' ``Server`` header."""
    response.headers["Server"] = "mustcheck"


def _context(request: web.Request) -> HttpCallContext:
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    host, port = (
        (peername[0], peername[1]) if isinstance(peername, tuple) and len(peername) >= 2 else (None, None)
    )
    certificate = transport.get_extra_info("peercert") if transport is not None else None
    return HttpCallContext(
        metadata=[(key, request.headers[key]) for key in METADATA_HEADERS if key in request.headers],
        peer=grpc_peer(host, port),
        common_name=certificate_common_name(certificate),
    )


def _rpc(pipeline: CallPipeline, method: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    request_type = pipeline.request_type(method)

    async def handle(request: web.Request) -> web.Response:
        context = _context(request)
        message = await decode(request, request_type)
        try:
            answer = await pipeline.call(method, message, context)
        except HttpAbort as refused:
            return error_response(refused.code, refused.details, refused.trailers)
        # A batch's answer (up to 1,000 results) is converted off the event loop, as a large body is.
        body = await asyncio.to_thread(_encode, answer) if method == "BatchCheck" else _encode(answer)
        return web.Response(body=body, content_type=JSON_CONTENT_TYPE, charset="utf-8")

    return handle


def _encode(answer: Message) -> bytes:
    """``answer`` in protobuf's JSON mapping, every field written out (default values too)."""
    data = json_format.MessageToDict(answer, always_print_fields_with_no_presence=True)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


@web.middleware
async def _no_stack_traces(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        # No call was made (not audited): an unknown path is NOT_FOUND, another HTTP method or a request
        # the HTTP layer refused is INVALID_ARGUMENT, with aiohttp's HTTP status.
        if error.status == 404:
            code, reason = grpc.StatusCode.NOT_FOUND, "not_found"
        else:
            code, reason = grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"
        message = f"{request.method} {request.path[:128]}: {error.reason}"
        body = error_body(code, reason, message)
        return web.Response(
            body=json.dumps(body).encode(),
            status=error.status,
            content_type=JSON_CONTENT_TYPE,
            charset="utf-8",
            headers={"Allow": error.headers["Allow"]} if "Allow" in error.headers else None,
        )
    except Exception as error:
        reference = uuid.uuid4().hex[:12]
        log.error("unhandled_http_error", path=request.path[:128], reference=reference, exc_info=error)
        return json_response(
            error_body(grpc.StatusCode.INTERNAL, "internal", f"internal error (reference {reference})"),
            status=500,
        )
