"""OpenTelemetry (extra ``mustcheck[otel]``): the SDK starts a client span per call and sends its W3C
trace context; a gateway run with ``tracing`` (``serve --otel``) continues the caller's trace in a server
span; no span carries an identifier, a purpose or a token, and a refusal's span names its reason code."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

opentelemetry = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra and opentelemetry-sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from mustcheck import Client, InvalidRequest  # noqa: E402
from mustcheck._generated.v1 import check_pb2 as pb  # noqa: E402
from mustcheck._generated.v1 import check_pb2_grpc  # noqa: E402
from mustcheck_gateway.server import ConfigError, GatewayConfig, GatewayThread, check_listener  # noqa: E402

from conftest import POLICY_DIR  # noqa: E402
from factories import new_citizen_id, new_uscc  # noqa: E402
from provision import provision  # noqa: E402

EXPORTER = InMemorySpanExporter()
CHECK = "mustcheck.v1.CheckService/Check"


@pytest.fixture(scope="module")
def traced_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # once per process: this module's tests share it
    data_dir: Path = tmp_path_factory.mktemp("traced")
    config = GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, tracing=True)
    with GatewayThread(config) as gateway:
        target = f"127.0.0.1:{gateway.port}"
        assert gateway.admin_token_file is not None
        token = provision(target, gateway.admin_token_file.read_text().strip(), "traced")
        yield target, token


def _spans(name: str, kind: trace.SpanKind, count: int = 1) -> list[ReadableSpan]:
    """The finished spans of this name and kind, once there are ``count`` of them (or after 10 s): the
    server ends its span after the answer is sent, so a client may return before it is finished."""
    deadline = time.monotonic() + 10
    while True:
        spans = [span for span in EXPORTER.get_finished_spans() if span.name == name and span.kind is kind]
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.01)


def _no_secrets(spans: list[ReadableSpan], *secrets: str) -> None:
    for span in spans:
        texts = [str(value) for value in (span.attributes or {}).values()]
        texts += [span.name, str(span.status.description)]
        texts += [str(value) for event in span.events for value in (event.attributes or {}).values()]
        for secret in secrets:
            assert not any(secret in text for text in texts), (span.name, texts)


def test_a_check_continues_the_callers_trace_without_identifiers(traced_gateway: tuple[str, str]) -> None:
    target, token = traced_gateway
    EXPORTER.clear()
    person = new_citizen_id()
    tracer = trace.get_tracer("approval-system")
    with tracer.start_as_current_span("approve permit") as parent, Client(target, token=token) as client:
        client.check(person, "MOF-0001", purpose="资格审查 of 张三", authorization_ref="AUTH-1")
    (client_span,) = _spans(CHECK, trace.SpanKind.CLIENT)
    (server_span,) = _spans(CHECK, trace.SpanKind.SERVER)
    trace_id = parent.get_span_context().trace_id
    assert client_span.context is not None and server_span.context is not None
    assert client_span.context.trace_id == server_span.context.trace_id == trace_id
    assert client_span.parent is not None and client_span.parent.span_id == parent.get_span_context().span_id
    assert server_span.parent is not None and server_span.parent.span_id == client_span.context.span_id
    assert server_span.parent.is_remote  # it came over the wire, in traceparent
    assert server_span.attributes is not None
    assert (
        server_span.attributes["rpc.method"] == "Check"
        and server_span.attributes["rpc.grpc.status_code"] == 0
    )
    _no_secrets([client_span, server_span], person, person[-6:], "张三", "AUTH-1", token)


def test_a_refusal_names_its_reason_code_only(traced_gateway: tuple[str, str]) -> None:
    target, token = traced_gateway
    EXPORTER.clear()
    subject = new_uscc()
    with Client(target, token=token) as client, pytest.raises(InvalidRequest):
        client.check(subject, "NO-SUCH-MATTER")
    spans = _spans(CHECK, trace.SpanKind.CLIENT) + _spans(CHECK, trace.SpanKind.SERVER)
    assert len(spans) == 2
    for span in spans:
        assert span.attributes is not None
        assert span.attributes["mustcheck.reason"] == "matter.unknown"
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert span.status.status_code is trace.StatusCode.ERROR
        assert not span.events  # no exception recorded: its message may quote input
    _no_secrets(spans, subject, "NO-SUCH-MATTER")


def test_a_foreign_callers_traceparent_is_continued(traced_gateway: tuple[str, str]) -> None:
    """Any gRPC client (Java, Node, Go) that sends W3C trace context gets the gateway's span in its trace."""
    target, token = traced_gateway
    EXPORTER.clear()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    with grpc.insecure_channel(target) as channel:
        check_pb2_grpc.CheckServiceStub(channel).Check(
            pb.CheckRequest(subject=new_uscc(), matter="MOF-0001"),
            metadata=(("authorization", f"Bearer {token}"), ("traceparent", traceparent)),
            timeout=10,
        )
    (server_span,) = _spans(CHECK, trace.SpanKind.SERVER)
    assert server_span.context is not None and server_span.parent is not None
    assert f"{server_span.context.trace_id:032x}" == trace_id
    assert f"{server_span.parent.span_id:016x}" == "00f067aa0ba902b7"


def test_tracing_without_opentelemetry_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mustcheck_gateway.observability import tracing

    monkeypatch.setattr(tracing, "trace", None)
    with pytest.raises(ConfigError, match=r"mustcheck\[otel\]"):
        check_listener(GatewayConfig(data_dir=tmp_path, listen="127.0.0.1:0", tracing=True))


def test_an_http_call_continues_the_callers_trace_through_the_same_interceptor(
    traced_gateway: tuple[str, str], tmp_path: Path
) -> None:
    """The HTTP/JSON binding runs the gRPC interceptors, tracing among them: a caller's traceparent header
    is continued, and a refusal's span names its reason code (docs/http.md)."""
    config = GatewayConfig(
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        tracing=True,
    )
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        token = provision(f"127.0.0.1:{gateway.port}", gateway.admin_token_file.read_text().strip(), "h")
        trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        EXPORTER.clear()
        for subject, status in ((new_uscc(), 200), ("914403001922038217", 400)):
            call = urllib.request.Request(
                f"http://127.0.0.1:{gateway.http_port}/v1/Check",
                data=json.dumps({"subject": subject, "matter": "MOF-0001"}).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {token}",
                    "traceparent": f"00-{trace_id}-{parent_id}-01",
                },
            )
            try:
                with urllib.request.urlopen(call, timeout=30) as response:
                    assert response.status == status
            except urllib.error.HTTPError as error:
                assert error.code == status
    answered, refused = _spans(CHECK, trace.SpanKind.SERVER, count=2)
    for span in (answered, refused):
        assert span.context is not None and span.context.trace_id == int(trace_id, 16)
        assert span.parent is not None and span.parent.span_id == int(parent_id, 16) and span.parent.is_remote
    assert refused.attributes is not None and refused.attributes["mustcheck.reason"] == "uscc.check_character"
    _no_secrets([answered, refused], "914403001922038217", token)
