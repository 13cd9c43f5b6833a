"""RFC 9162's Merkle tree written from the RFC's recursive definitions with hashlib directly (SHA-256), not
from the module's iterative code: the oracle of the Merkle, audit and receipt tests (tests/test_merkle.py,
tests/test_rules_audit.py, tests/test_rules_receipts.py).

Every function but :func:`oracle_leaf` takes the *leaf hashes* of the tree (``oracle_leaf`` of each entry):
the tests build leaves in their own ways (raw test data, a record's answer and chain hash)."""

from __future__ import annotations

import hashlib


def oracle_leaf(data: bytes) -> bytes:
    """§2.1.1: the hash of a leaf, ``SHA-256(0x00 || d)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def oracle_node(left: bytes, right: bytes) -> bytes:
    """§2.1.1: the hash of an inner node, ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def oracle_mth(leaf_hashes: list[bytes]) -> bytes:
    """§2.1.1 MTH: the root of the tree over ``leaf_hashes`` (the empty tree's: SHA-256 of nothing)."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = _split(len(leaf_hashes))
    return oracle_node(oracle_mth(leaf_hashes[:k]), oracle_mth(leaf_hashes[k:]))


def oracle_path(m: int, leaf_hashes: list[bytes]) -> list[bytes]:
    """§2.1.3.1 PATH(m, D[n]): the inclusion proof of leaf ``m``, nearest first."""
    if len(leaf_hashes) == 1:
        return []
    k = _split(len(leaf_hashes))
    if m < k:
        return [*oracle_path(m, leaf_hashes[:k]), oracle_mth(leaf_hashes[k:])]
    return [*oracle_path(m - k, leaf_hashes[k:]), oracle_mth(leaf_hashes[:k])]


def oracle_subproof(m: int, leaf_hashes: list[bytes], whole: bool) -> list[bytes]:
    """§2.1.4.1 SUBPROOF(m, D[n], b): with ``whole`` true, the consistency proof from size ``m``."""
    if m == len(leaf_hashes):
        return [] if whole else [oracle_mth(leaf_hashes)]
    k = _split(len(leaf_hashes))
    if m <= k:
        return [*oracle_subproof(m, leaf_hashes[:k], whole), oracle_mth(leaf_hashes[k:])]
    return [*oracle_subproof(m - k, leaf_hashes[k:], False), oracle_mth(leaf_hashes[:k])]
