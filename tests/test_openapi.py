"""The committed OpenAPI document is the one proto/ makes (scripts/generate_openapi.py --check)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mustcheck._generated.v1 import check_pb2
from mustcheck_gateway.http.binding import openapi_document
from mustcheck_gateway.http.pipeline import HTTP_METHODS

from conftest import REPO

pytest.importorskip(
    "grpc_tools", reason="generating the document needs grpcio-tools (pip install -e '.[dev]')"
)

SCRIPT = REPO / "scripts" / "generate_openapi.py"


def _check(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", *options], capture_output=True, text=True, timeout=120
    )


def test_the_committed_document_is_current_with_the_proto() -> None:
    result = _check()
    assert result.returncode == 0, result.stderr


def test_a_proto_change_makes_the_check_fail(tmp_path: Path) -> None:
    proto_root = tmp_path / "proto"
    shutil.copytree(REPO / "proto", proto_root)
    check_proto = proto_root / "mustcheck" / "v1" / "check.proto"
    text = check_proto.read_text(encoding="utf-8")
    changed = text.replace(
        "  google.protobuf.Timestamp as_of_time = 7;\n",
        "  google.protobuf.Timestamp as_of_time = 7;\n  string drifted = 4242;  // a number no field takes\n",
    )
    assert changed != text
    check_proto.write_text(changed, encoding="utf-8")
    result = _check("--proto-root", str(proto_root))
    assert result.returncode == 1 and "out of date" in result.stderr


def test_the_document_has_every_offered_method_and_every_field_of_its_messages() -> None:
    document = json.loads(openapi_document())
    schemas = document["components"]["schemas"]
    service = check_pb2.DESCRIPTOR.services_by_name["CheckService"]
    for name in HTTP_METHODS:
        operation = document["paths"][f"/v1/{name}"]["post"]
        method = service.methods_by_name[name]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/" + method.input_type.name
        )
        for message in (method.input_type, method.output_type):
            assert set(schemas[message.name]["properties"]) == {f.json_name for f in message.fields}
        assert {"400", "401", "403", "413", "415", "429"} <= set(operation["responses"])
