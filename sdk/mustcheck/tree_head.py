"""Signed tree heads of a gateway's audit log, and the leaves its Merkle tree is built over.

A *tree head* says "the log ``log_id`` holds ``size`` records and the Merkle tree over them (RFC 9162,
:mod:`.merkle`) has root ``root``", with the time it was signed, the signing key's id and the names of
its algorithms (``hash`` for the tree, ``sig`` for the signature): ``sha256``/``ed25519`` or
``sm3``/``sm2`` (:mod:`.suites`), so that a verifier picks the suite from the head itself. The
signature covers a domain tag and the canonical JSON of every field but the signature.

A *leaf* is one audit record, as the canonical JSON of the answer it records (the fields a receipt
carries) and the record's hash in the audit chain: a receipt can rebuild its leaf from what it carries,
and an auditor from the stored record.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .merkle import TreeHasher
from .suites import INTERNATIONAL, SUITES, Suite, public_key_of, suite_of

__all__ = [
    "ALGORITHMS",
    "ANSWER_FIELDS",
    "HASHERS",
    "TreeHead",
    "leaf_data",
    "sign_tree_head",
]

HEAD_DOMAIN = b"mustcheck.tree_head.v1\n"
LEAF_DOMAIN = b"mustcheck.leaf.v1\n"
ALGORITHMS: Mapping[str, str] = INTERNATIONAL.algorithms
HASHERS: Mapping[str, TreeHasher] = {suite.hasher.algorithm: suite.hasher for suite in SUITES.values()}
# The answer's fields, as a receipt carries them and a leaf records them.
# (``seq``: the audit record's sequence number; ``at``: the record's instant; ``version``: the data
# version answered from; ``subject``/``key``: the subject's keyed hash and the HMAC key's id.)
ANSWER_FIELDS = ("at", "caller", "key", "matter", "measures", "outcome", "seq", "subject", "version")
_HEAD_FIELDS = ("alg", "at", "kid", "log", "root", "size")


# ``json.dumps`` with these options builds an encoder each call: one, made once, encodes every leaf.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(data: Any) -> bytes:
    return _CANONICAL.encode(data).encode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def unb64(text: str) -> bytes:
    """Strict base64url without padding: the one spelling :func:`b64` gives, or ``ValueError``."""
    if not _B64URL_ALPHABET.issuperset(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64(data) != text:
        raise ValueError("unused bits set in the last character")
    return data


def leaf_data(answer: Mapping[str, Any], record_hash: str) -> bytes:
    """The bytes a record's leaf hashes: its answer's fields and its hash in the audit chain (the
    canonical JSON of ``{"answer": answer, "record": record_hash}``, written by :func:`leaf_data_json`)."""
    return leaf_data_json(canonical_json(dict(answer)), record_hash)


def leaf_data_json(answer_json: bytes, record_hash: str) -> bytes:
    """:func:`leaf_data` of an answer already encoded (``canonical_json(answer)``), the same bytes."""
    return LEAF_DOMAIN + b'{"answer":' + answer_json + b',"record":' + canonical_json(record_hash) + b"}"


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A signed tree head. ``root`` and ``signature`` are bytes; ``at`` is the instant as signed (text)."""

    log_id: str
    size: int
    root: bytes
    at: str
    key_id: str
    algorithms: Mapping[str, str]
    signature: bytes

    @property
    def hasher(self) -> TreeHasher:
        hasher = HASHERS.get(self.algorithms.get("hash", ""))
        if hasher is None:
            raise ValueError(f"unknown tree hash algorithm {self.algorithms.get('hash')!r}")
        return hasher

    def body(self) -> dict[str, Any]:
        """The signed fields, as JSON values (the signature is not among them)."""
        return {
            "alg": dict(self.algorithms),
            "at": self.at,
            "kid": self.key_id,
            "log": self.log_id,
            "root": b64(self.root),
            "size": self.size,
        }

    def signed_bytes(self) -> bytes:
        return HEAD_DOMAIN + canonical_json(self.body())

    def to_json(self) -> str:
        """The head with its signature, as one line of canonical JSON (how it is stored and published)."""
        return canonical_json({**self.body(), "sig": b64(self.signature)}).decode()

    @classmethod
    def from_body(cls, body: Mapping[str, Any], signature: bytes) -> TreeHead:
        """The head from its signed fields (``ValueError`` if any is missing, mistyped or misspelt)."""
        if sorted(body) != sorted(_HEAD_FIELDS):
            raise ValueError(f"a tree head has exactly the fields {', '.join(_HEAD_FIELDS)}")
        algorithms, size = body["alg"], body["size"]
        if not isinstance(algorithms, dict) or not all(isinstance(v, str) for v in algorithms.values()):
            raise ValueError("the head's algorithms are not names")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("the head's size is not a count")
        if not all(isinstance(body[name], str) for name in ("at", "kid", "log", "root")):
            raise ValueError("the head's fields are not text")
        return cls(
            str(body["log"]), size, unb64(body["root"]), body["at"], body["kid"], algorithms, signature
        )

    @classmethod
    def from_json(cls, text: str) -> TreeHead:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("sig"), str):
            raise ValueError("not a signed tree head")
        signature = unb64(data.pop("sig"))
        return cls.from_body(data, signature)

    def signature_problem(self, public_keys: Mapping[str, Any], signed: bytes | None = None) -> str | None:
        """None if the head is signed by its key id's key under a known suite, else why not.

        ``public_keys`` maps key ids to public keys (:class:`~.suites.PublicKey`, Ed25519 key objects, or
        PEM). A head of the SM suite needs the extra ``mustcheck[sm]`` (:class:`~.suites.SuiteUnavailable`).
        """
        suite = self.suite
        if suite is None:
            return f"tree head of size {self.size}: unknown algorithms {dict(self.algorithms)}"
        found = public_keys.get(self.key_id)
        if found is None:
            unknown = self.key_id
            return f"tree head of size {self.size}: signed with key {unknown}, which is not a known key"
        key = public_key_of(found)
        # A key that is not a public key, or one of the other suite's algorithm, cannot have made it.
        message = self.signed_bytes() if signed is None else signed
        if key is None or key.algorithm != suite.signature or not key.verify(self.signature, message):
            return f"tree head of size {self.size}: signature invalid"
        return None

    @property
    def suite(self) -> Suite | None:
        """The suite the head names (None: algorithms no suite has)."""
        return suite_of(self.algorithms)


class Signer(Protocol):
    def sign(self, data: bytes) -> bytes: ...


def sign_tree_head(
    log_id: str,
    size: int,
    root: bytes,
    at: str,
    key_id: str,
    signer: Signer,
    suite: Suite = INTERNATIONAL,
) -> TreeHead:
    """A tree head signed with ``signer`` (the gateway's side), naming ``suite``'s algorithms."""
    algorithms = suite.algorithms
    unsigned = TreeHead(log_id, size, root, at, key_id, algorithms, b"")
    return TreeHead(log_id, size, root, at, key_id, algorithms, signer.sign(unsigned.signed_bytes()))
