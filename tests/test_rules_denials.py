"""R10 for refusals: a denial's audit record is durable before the denial is answered.

A gateway of this test's own is started and its audit writer process paused (SIGSTOP). A check its
grant does not allow must then not be answered PERMISSION_DENIED: the record of the refusal cannot be
written, so the answer must wait (the call runs out of its deadline). Had the gateway answered first and
written afterwards, the denial would arrive while the writer sleeps. Once the writer goes on, the same
refusal is answered, and its record is there to be read.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import audit_pb2, audit_pb2_grpc, check_pb2, check_pb2_grpc
from mustcheck_gateway.server import GatewayConfig, GatewayThread

from conftest import POLICY_DIR
from factories import new_uscc
from provision import provision

pytestmark = pytest.mark.slow


def writer_pids(data_dir: Path) -> list[int]:
    """The audit writer processes writing into ``data_dir`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if b"mustcheck_gateway.audit.writer_process" in command and any(
                str(data_dir).encode() in part for part in command
            ):
                found.append(int(entry.name))
    return found


@pytest.fixture
def own_gateway(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    data_dir = tmp_path / "data"
    config = GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        yield f"127.0.0.1:{gateway.port}", gateway.admin_token_file.read_text().strip(), data_dir


def test_a_denial_is_not_answered_before_its_audit_record_is_written(
    own_gateway: tuple[str, str, Path],
) -> None:
    """Kills: a denial's audit record written after the answer leaves."""
    target, admin_token, data_dir = own_gateway
    token = provision(target, admin_token, "narrow", matters=["MOF-0001"])
    auditor = provision(target, admin_token, "denial-auditor", roles=["auditor"], grant=False)
    subject = new_uscc()
    request = check_pb2.CheckRequest(subject=subject, matter="MOHURD-0001")  # not granted
    (writer,) = writer_pids(data_dir)
    with grpc.insecure_channel(target) as channel:
        checks = check_pb2_grpc.CheckServiceStub(channel)
        os.kill(writer, signal.SIGSTOP)
        try:
            with pytest.raises(grpc.RpcError) as paused:
                checks.Check(request, metadata=auth_metadata(token), timeout=3)
        finally:
            os.kill(writer, signal.SIGCONT)
        assert paused.value.code() is not grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as resumed:
            checks.Check(request, metadata=auth_metadata(token), timeout=30)
        assert resumed.value.code() is grpc.StatusCode.PERMISSION_DENIED
        records = (
            audit_pb2_grpc.AuditServiceStub(channel)
            .Query(
                audit_pb2.AuditQuery(subject=subject, caller_id="narrow"),
                metadata=auth_metadata(auditor),
                timeout=10,
            )
            .records
        )
    assert records and all(record.matter == "MOHURD-0001" for record in records)
    assert any(record.status == "PERMISSION_DENIED" for record in records)
