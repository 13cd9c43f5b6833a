"""The gRPC check service: authenticate, run the check pipeline, mask, answer."""

from __future__ import annotations

import time
from typing import Any

import grpc
import structlog

from mustcheck._generated.v1 import check_pb2 as pb
from mustcheck._generated.v1 import check_pb2_grpc as pb_grpc

from .callers import Authenticator
from .checks import MAX_BATCH, CheckEngine
from .errors import GatewayError, InvalidArgument, InvalidSubject
from .masking import Masker
from .responses import SUBJECT_KIND_FROM_PROTO, check_response

log = structlog.get_logger("mustcheck.gateway")
Context = grpc.aio.ServicerContext[Any, Any]


class CheckService(pb_grpc.CheckServiceServicer):
    def __init__(self, engine: CheckEngine, authenticator: Authenticator) -> None:
        self.engine = engine
        self.authenticator = authenticator

    async def Check(self, request: pb.CheckRequest, context: Context) -> pb.CheckResponse:
        started = time.perf_counter()
        status = "OK"
        caller = None
        try:
            caller = self.authenticator.authenticate(context)
            matter = self.engine.matter(request.matter)
            kind = SUBJECT_KIND_FROM_PROTO.get(request.subject_kind)
            answer = self.engine.check(caller, request.subject, kind, matter)
            return check_response(answer, Masker())
        except GatewayError as error:
            status = error.status.name
            raise
        finally:
            log.info(
                "check",
                caller=caller.caller_id if caller else None,
                matter=request.matter,
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
            )

    async def BatchCheck(self, request: pb.BatchCheckRequest, context: Context) -> pb.BatchCheckResponse:
        started = time.perf_counter()
        caller = self.authenticator.authenticate(context)
        if not request.subjects:
            raise InvalidArgument("subjects is empty: a batch needs 1 to 1000 subjects", reason="batch.empty")
        if len(request.subjects) > MAX_BATCH:
            raise InvalidArgument(
                f"a batch takes at most {MAX_BATCH} subjects, got {len(request.subjects)}",
                reason="batch.too_large",
            )
        matter = self.engine.matter(request.matter)
        masker = Masker()
        items = []
        version = 0
        failed = 0
        for index, subject in enumerate(request.subjects):
            try:
                answer = self.engine.check(caller, subject, None, matter)
            except InvalidSubject as error:
                failed += 1
                items.append(
                    pb.BatchCheckItem(
                        index=index,
                        error=pb.ItemError(
                            code=error.status.value[0], message=error.message, reason=error.reason
                        ),
                    )
                )
                continue
            version = max(version, answer.data_version)
            items.append(pb.BatchCheckItem(index=index, result=check_response(answer, masker)))
        log.info(
            "batch_check",
            caller=caller.caller_id,
            matter=matter.code,
            subjects=len(items),
            failed_items=failed,
            status="OK",
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return pb.BatchCheckResponse(items=items, data_version=version or self.engine.store.data_version())
