"""Bounds on every request field, checked before a handler sees the request.

Every string, bytes and repeated field of every request message has a bound: the field's own where
:data:`TEXT_LIMITS` / :data:`COUNT_LIMITS` name it, the default otherwise, so that a field added later is
bounded too. A request over a bound is refused with INVALID_ARGUMENT naming the field (reason
``<field>.too_long`` or ``<field>.too_many``); the refusal is audited by :mod:`.refusals`. Messages
never echo an over-long value: :func:`.errors.echo` bounds what an error message may repeat of the input.

The whole message is bounded too: :data:`MAX_RECEIVE_BYTES` is the server's
``grpc.max_receive_message_length``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .errors import MAX_MESSAGE, InvalidArgument
from .masking import mask_id_shapes

# The largest message the gateway accepts (gRPC's own default, set deliberately): an import sends a
# JSON Lines file in runs of about a million characters; every other request is far smaller (a full
# 1,000-subject batch with every field at its bound is under 200 KB).
MAX_RECEIVE_BYTES = 4 * 1024 * 1024

DEFAULT_TEXT = 256  # characters of a string field (bytes of a bytes field) not listed below
DEFAULT_COUNT = 1000  # values of a repeated field not listed below

# Field name -> most characters (bytes for bytes fields). A name means the same thing in every message.
TEXT_LIMITS: dict[str, int] = {
    "subject": 64,  # an 18-character identifier, with room for spaces and full-width forms (R1)
    "subjects": 64,  # each subject of a batch
    "matter": 64,
    "purpose": 512,
    "authorization_ref": 256,
    "approval_id": 128,
    "decision": 32,
    "applied_measures": 64,
    "receipt": 8192,
    "note": 2000,
    "caller_id": 64,
    "name": 200,
    "department": 64,
    "roles": 32,
    "tls_identity": 256,
    "label": 200,
    "token_id": 64,
    "matters": 128,  # a grant's matter codes, "kind:<matter kind>" or "*"
    "subject_kinds": 32,
    "visible_fields": 32,
    "row_json": 64 * 1024,
    "corrected_json": 64 * 1024,
    "entry_id": 128,
    "source": 200,
    "decision_document": 200,
    "resolution": 32,
    "reason": 2000,
    "code": 64,
    "file_name": 255,
    "list": 16,
    "as_of": 64,
    "replay_of": 128,
    "format": 16,
    "outcome": 64,
    "kind": 64,
    "by": 32,
    "bucket": 32,
    "hash_key": 1024,  # Watch checks its own, narrower range (16 to 64 bytes)
    # An import's rows: bounded by the message size alone.
    "text": MAX_RECEIVE_BYTES,
    "rows": MAX_RECEIVE_BYTES,
}

# Field name -> most values of a repeated field. A batch's size is the check service's own rule
# (1 to 1,000 subjects, reason ``batch.too_large``), so ``subjects`` is bounded by the message size here.
COUNT_LIMITS: dict[str, int] = {
    "subjects": MAX_RECEIVE_BYTES,
    "applied_measures": 200,
    "roles": 16,
    "subject_kinds": 8,
    "visible_fields": 16,
    "matters": 1000,
    "seqs": 1000,
    # A name can mean two things in two messages: a grant's subject kinds (a handful) and a batch's
    # kind per item (as many as its subjects). ``Message.field`` entries win over the bare name.
    "BatchCheckRequest.subject_kinds": MAX_RECEIVE_BYTES,
}


@dataclass(frozen=True, slots=True)
class _Rule:
    field: FieldDescriptor
    text: int
    count: int
    nested: bool
    map_entry: bool


_RULES: dict[str, tuple[_Rule, ...]] = {}


def _rules(descriptor: Descriptor | Any) -> tuple[_Rule, ...]:
    rules = _RULES.get(descriptor.full_name)
    if rules is None:
        rules = _RULES[descriptor.full_name] = tuple(
            _Rule(
                field,
                TEXT_LIMITS.get(f"{descriptor.name}.{field.name}", TEXT_LIMITS.get(field.name, DEFAULT_TEXT)),
                COUNT_LIMITS.get(
                    f"{descriptor.name}.{field.name}", COUNT_LIMITS.get(field.name, DEFAULT_COUNT)
                ),
                field.type == FieldDescriptor.TYPE_MESSAGE,
                field.message_type is not None and field.message_type.GetOptions().map_entry,
            )
            for field in descriptor.fields
        )
    return rules


def _too_long(path: str, name: str, length: int, limit: int, unit: str) -> InvalidArgument:
    return InvalidArgument(
        f"{path} is {length:,} {unit} long; at most {limit:,} are allowed", reason=f"{name}.too_long"
    )


def check_bounds(message: Message, prefix: str = "") -> None:
    """Raise InvalidArgument for the first field of ``message`` (or of a message in it) over its bound."""
    for rule in _rules(message.DESCRIPTOR):
        field = rule.field
        name = field.name
        path = prefix + name
        value = getattr(message, name)
        if field.is_repeated:
            if len(value) > rule.count:
                raise InvalidArgument(
                    f"{path} has {len(value):,} values; at most {rule.count:,} are allowed",
                    reason=f"{name}.too_many",
                )
            if rule.nested:
                if rule.map_entry:
                    continue  # no request carries a map
                for index, item in enumerate(value):
                    check_bounds(item, f"{path}[{index}].")
                continue
            if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
                for index, item in enumerate(value):
                    if len(item) > rule.text:
                        raise _too_long(f"{path}[{index}]", name, len(item), rule.text, _unit(field))
            continue
        if rule.nested:
            if message.HasField(name):
                check_bounds(value, path + ".")
        elif (
            field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) and len(value) > rule.text
        ):
            raise _too_long(path, name, len(value), rule.text, _unit(field))


def _unit(field: FieldDescriptor) -> str:
    return "bytes" if field.type == FieldDescriptor.TYPE_BYTES else "characters"


def clip(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters (what an audit record keeps of an over-long field)."""
    return value if len(value) <= limit else value[:limit] + "…"


def shown_message(message: str) -> str:
    """An error message as it leaves the gateway: ID-number-shaped strings masked, bounded in length."""
    return clip(mask_id_shapes(message), MAX_MESSAGE)
