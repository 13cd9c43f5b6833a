"""Write the OpenAPI 3 document of the HTTP/JSON binding from proto/ (never edit the document by hand).

The document (``gateway/mustcheck_gateway/http/openapi.json``, served at ``GET /openapi.json``) is made
from the proto files' descriptors, comments included: one ``POST /v1/<Rpc>`` for each method the binding
offers, a schema for each message in protobuf's JSON mapping (lowerCamelCase names, 64-bit integers as
strings, enums by name, Timestamp as RFC 3339 text), every enum of the package (the ``Reason`` enum
among them, where the proto defines it), the request bounds of :mod:`mustcheck_gateway.bounds`, and
the error body. ``--check`` regenerates it in memory and fails on any difference, which is what CI and
``tests/test_openapi.py`` run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from mustcheck_gateway.bounds import COUNT_LIMITS, DEFAULT_COUNT, DEFAULT_TEXT, MAX_RECEIVE_BYTES, TEXT_LIMITS
from mustcheck_gateway.http.errors import HTTP_STATUS_BY_REASON
from mustcheck_gateway.http.pipeline import HTTP_METHODS

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO_PACKAGE = "mustcheck/v1"
TARGET = ROOT / "gateway" / "mustcheck_gateway" / "http" / "openapi.json"
PACKAGE = "mustcheck.v1"
SERVICE = "CheckService"
REASON_ENUM = "Reason"
Field = descriptor_pb2.FieldDescriptorProto

# Source code info paths (descriptor.proto's field numbers).
_MESSAGE, _FIELD, _NESTED, _ENUM, _ENUM_VALUE, _SERVICE, _METHOD = 4, 2, 3, 5, 2, 6, 2

_SCALARS: dict[int, dict[str, Any]] = {
    Field.TYPE_STRING: {"type": "string"},
    Field.TYPE_BOOL: {"type": "boolean"},
    Field.TYPE_BYTES: {"type": "string", "format": "byte", "description": "base64"},
    Field.TYPE_DOUBLE: {"type": "number", "format": "double"},
    Field.TYPE_FLOAT: {"type": "number", "format": "float"},
    Field.TYPE_INT32: {"type": "integer", "format": "int32"},
    Field.TYPE_SINT32: {"type": "integer", "format": "int32"},
    Field.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    Field.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    Field.TYPE_FIXED32: {"type": "integer", "format": "int32", "minimum": 0},
}
# 64-bit integers are JSON strings in protobuf's mapping (a number is accepted on input too).
for _type in (
    Field.TYPE_INT64,
    Field.TYPE_SINT64,
    Field.TYPE_SFIXED64,
    Field.TYPE_UINT64,
    Field.TYPE_FIXED64,
):
    _SCALARS[_type] = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339, UTC ('Z'), as protobuf's JSON mapping writes a Timestamp",
    },
}


def descriptor_set(proto_root: Path) -> descriptor_pb2.FileDescriptorSet:
    protos = sorted(str(p.relative_to(proto_root)) for p in (proto_root / PROTO_PACKAGE).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "descriptors.pb"
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            "--include_source_info",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files = descriptor_pb2.FileDescriptorSet()
        files.ParseFromString(out.read_bytes())
    return files


def _comment(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines()).strip()


class _Package:
    """The package's messages, enums and comments, by full name (``.mustcheck.v1.CheckRequest``)."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self.messages: dict[str, tuple[descriptor_pb2.DescriptorProto, str, dict[str, str]]] = {}
        self.enums: dict[str, tuple[descriptor_pb2.EnumDescriptorProto, str, dict[str, str]]] = {}
        self.methods: dict[str, tuple[descriptor_pb2.MethodDescriptorProto, str]] = {}
        for file in files:
            if file.package != PACKAGE:
                continue
            comments = {
                tuple(location.path): _comment(location.leading_comments or location.trailing_comments)
                for location in file.source_code_info.location
            }
            for index, message in enumerate(file.message_type):
                self._message(message, f".{PACKAGE}", (_MESSAGE, index), comments)
            for index, enum in enumerate(file.enum_type):
                self._enum(enum, f".{PACKAGE}", (_ENUM, index), comments)
            for s_index, service in enumerate(file.service):
                if service.name != SERVICE:
                    continue
                for m_index, method in enumerate(service.method):
                    self.methods[method.name] = (
                        method,
                        comments.get((_SERVICE, s_index, _METHOD, m_index), ""),
                    )

    def _message(
        self,
        message: descriptor_pb2.DescriptorProto,
        scope: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        name = f"{scope}.{message.name}"
        fields = {
            field.name: comments.get((*path, _FIELD, index), "") for index, field in enumerate(message.field)
        }
        self.messages[name] = (message, comments.get(path, ""), fields)
        for index, nested in enumerate(message.nested_type):
            self._message(nested, name, (*path, _NESTED, index), comments)
        for index, enum in enumerate(message.enum_type):
            self._enum(enum, name, (*path, 4, index), comments)

    def _enum(
        self,
        enum: descriptor_pb2.EnumDescriptorProto,
        scope: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        values = {
            value.name: comments.get((*path, _ENUM_VALUE, index), "")
            for index, value in enumerate(enum.value)
        }
        self.enums[f"{scope}.{enum.name}"] = (enum, comments.get(path, ""), values)


def _schema_name(full_name: str) -> str:
    return full_name.removeprefix(f".{PACKAGE}.").replace(".", "_")


def _ref(full_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{_schema_name(full_name)}"}


def _bounds(message: str, field: Field) -> dict[str, Any]:
    """The request bound of a field (mustcheck_gateway.bounds), as JSON Schema keywords."""
    text = TEXT_LIMITS.get(f"{message}.{field.name}", TEXT_LIMITS.get(field.name, DEFAULT_TEXT))
    if field.type == Field.TYPE_STRING:
        return {"maxLength": text}
    return {}


class _Builder:
    def __init__(self, package: _Package) -> None:
        self.package = package
        self.schemas: dict[str, Any] = {}
        self.requests: set[str] = set()

    def message(self, full_name: str) -> None:
        key = _schema_name(full_name)
        if key in self.schemas or full_name in _WELL_KNOWN:
            return
        message, description, comments = self.package.messages[full_name]
        self.schemas[key] = {}  # reserved before the fields: a message may refer to itself
        properties: dict[str, Any] = {}
        oneofs: dict[int, list[str]] = {}
        for field in message.field:
            shape = self.field(message, field, full_name in self.requests)
            note = comments.get(field.name)
            if note:
                shape = (
                    {"allOf": [shape], "description": note}
                    if "$ref" in shape
                    else {**shape, "description": note}
                )
            properties[field.json_name] = shape
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(field.json_name)
        schema: dict[str, Any] = {"type": "object"}
        notes = [description] if description else []
        for index, names in sorted(oneofs.items()):
            notes.append(f"At most one of {', '.join(names)} ({message.oneof_decl[index].name}).")
        if notes:
            schema["description"] = " ".join(notes)
        schema["properties"] = properties
        schema["additionalProperties"] = False
        self.schemas[key] = schema

    def field(self, message: descriptor_pb2.DescriptorProto, field: Field, request: bool) -> dict[str, Any]:
        if field.type == Field.TYPE_MESSAGE:
            nested = self.package.messages.get(field.type_name)
            if nested is not None and nested[0].options.map_entry:
                value = next(f for f in nested[0].field if f.name == "value")
                return {"type": "object", "additionalProperties": self.single(message, value, request)}
        single = self.single(message, field, request)
        if field.label == Field.LABEL_REPEATED:
            schema: dict[str, Any] = {"type": "array", "items": single}
            if request:
                count = COUNT_LIMITS.get(
                    f"{message.name}.{field.name}", COUNT_LIMITS.get(field.name, DEFAULT_COUNT)
                )
                if count < MAX_RECEIVE_BYTES:
                    schema["maxItems"] = count
            return schema
        return single

    def single(self, message: descriptor_pb2.DescriptorProto, field: Field, request: bool) -> dict[str, Any]:
        if field.type == Field.TYPE_MESSAGE:
            if field.type_name in _WELL_KNOWN:
                return dict(_WELL_KNOWN[field.type_name])
            if request:
                self.requests.add(field.type_name)
            self.message(field.type_name)
            return _ref(field.type_name)
        if field.type == Field.TYPE_ENUM:
            self.enum(field.type_name)
            return _ref(field.type_name)
        schema = dict(_SCALARS[field.type])
        if request:
            schema.update(_bounds(message.name, field))
        return schema

    def enum(self, full_name: str) -> None:
        key = _schema_name(full_name)
        if key in self.schemas:
            return
        enum, description, values = self.package.enums[full_name]
        notes = [f"{name}: {text}" for name, text in values.items() if text]
        schema: dict[str, Any] = {"type": "string", "enum": [value.name for value in enum.value]}
        text = " ".join(part for part in [description, "; ".join(notes)] if part)
        if text:
            schema["description"] = text
        self.schemas[key] = schema


def _error_schema(has_reason_enum: bool) -> dict[str, Any]:
    reason: dict[str, Any] = (
        {"allOf": [_ref(f".{PACKAGE}.{REASON_ENUM}")], "description": "The Reason enum value's name."}
        if has_reason_enum
        else {"type": "string", "description": "REASON_ and the dotted code, upper case, '.' as '_'."}
    )
    return {
        "type": "object",
        "description": "A refused call: the gRPC status the gRPC binding would give, and why.",
        "required": ["code", "reason", "reasonCode", "message"],
        "properties": {
            "code": {"type": "string", "description": "The gRPC status name, e.g. INVALID_ARGUMENT."},
            "reason": reason,
            "reasonCode": {
                "type": "string",
                "description": "The dotted reason code, as gRPC's mustcheck-reason trailer carries it.",
            },
            "message": {
                "type": "string",
                "description": "What was wrong, for people (at most 512 characters).",
            },
        },
    }


_ERRORS: dict[str, str] = {
    "400": "Invalid input (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE): a malformed body, an "
    "unknown field, a field over its bound, an invalid identifier (reason names the rule).",
    "401": "UNAUTHENTICATED: no credentials, or a token the gateway does not accept.",
    "403": "PERMISSION_DENIED: no grant for this matter, subject kind or purpose.",
    "404": "NOT_FOUND: an unknown matter.",
    "408": "The body did not arrive within 30 seconds (reason request.timeout).",
    "413": "The body is over 4 MiB, or holds over 20,000 JSON values (reason request.too_large).",
    "415": "The body is not JSON in UTF-8 (reason request.content_type).",
    "429": "RESOURCE_EXHAUSTED: over the grant's rate or quota, or a throttled address; Retry-After in "
    "seconds where known.",
    "500": "INTERNAL: with a reference to the gateway's log; never a stack trace.",
    "503": "UNAVAILABLE: the store or the audit log cannot serve now (no answer leaves unaudited).",
}


def document(proto_root: Path = PROTO_ROOT) -> dict[str, Any]:
    package = _Package(descriptor_set(proto_root).file)
    builder = _Builder(package)
    paths: dict[str, Any] = {}
    for name in HTTP_METHODS:
        method, description = package.methods[name]
        builder.requests.add(method.input_type)
        builder.message(method.input_type)
        builder.message(method.output_type)
        responses: dict[str, Any] = {
            "200": {
                "description": "The answer.",
                "content": {"application/json": {"schema": _ref(method.output_type)}},
            }
        }
        for status in _ERRORS:
            responses[status] = {"$ref": f"#/components/responses/E{status}"}
        paths[f"/v1/{name}"] = {
            "post": {
                "operationId": name,
                "summary": description,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(method.input_type)}},
                },
                "responses": responses,
            }
        }
    for full_name in sorted(package.enums):
        builder.enum(full_name)  # every enum of the package, the Reason enum among them
    has_reason_enum = f".{PACKAGE}.{REASON_ENUM}" in package.enums
    schemas = dict(sorted(builder.schemas.items()))
    schemas["Error"] = _error_schema(has_reason_enum)
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    retry_after = {
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MustCheck HTTP/JSON binding",
            "version": PACKAGE.rsplit(".", 1)[1],
            "description": "The check service over HTTP with protobuf's JSON mapping (docs/http.md): the "
            "same authentication, grants, bounds, masking, audit and receipts as gRPC. Generated from "
            "proto/ by scripts/generate_openapi.py.",
        },
        "paths": {
            **paths,
            "/openapi.json": {
                "get": {
                    "operationId": "OpenAPI",
                    "summary": "This document.",
                    "security": [],
                    "responses": {"200": {"description": "The OpenAPI document."}},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "Health",
                    "summary": "SERVING, or NOT_SERVING (503) while the gateway drains or cannot audit.",
                    "security": [],
                    "responses": {
                        "200": {"description": "Serving."},
                        "503": {"description": "Not serving."},
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": error_content,
                    **({"headers": retry_after} if status in ("429", "503") else {}),
                }
                for status, text in _ERRORS.items()
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A token the gateway issued."},
                "clientCertificate": {
                    "type": "mutualTLS",
                    "description": "A client certificate whose common name is mapped to a caller.",
                },
            },
        },
        "security": [{"bearer": []}, {"clientCertificate": []}],
        "x-mustcheck-http-status-by-reason": dict(HTTP_STATUS_BY_REASON),
    }


def render(proto_root: Path = PROTO_ROOT) -> str:
    return json.dumps(document(proto_root), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed document is not current")
    parser.add_argument("--proto-root", type=Path, default=PROTO_ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, default=TARGET, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    fresh = render(options.proto_root)
    if options.check:
        current = options.target.read_text(encoding="utf-8") if options.target.exists() else ""
        if current != fresh:
            print(
                f"{options.target.name} is out of date with proto/; run: python scripts/generate_openapi.py",
                file=sys.stderr,
            )
            return 1
        print("OpenAPI document is current")
        return 0
    options.target.write_text(fresh, encoding="utf-8")
    print(f"wrote {options.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
