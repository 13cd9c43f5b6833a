"""Merkle tree hashes and proofs, as RFC 9162 (Certificate Transparency 2.0) defines them.

The groundwork of a verifiable audit log: a leaf is hashed as ``H(0x00 || data)``, a node as
``H(0x01 || left || right)``, so that no leaf can pass for a node; the tree over ``n`` leaves splits at
the largest power of two below ``n``. An *inclusion proof* shows that a leaf is in the tree of a given
size and root; a *consistency proof* shows that a tree of one size is a prefix of a tree of another, so
that a log cannot drop or rewrite what an earlier root covered.

Everything takes a :class:`TreeHasher`, which names its algorithm, so that another hash (SM3) slots in
without a change of format. Proofs are built from a ``subtree(start, end)`` function that returns the
root of the leaves ``[start, end)``: a log with stored subtree roots answers it without reading every
leaf. Verification needs nothing but the proof, the sizes and the roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "SHA256",
    "Frontier",
    "Subtree",
    "TreeHasher",
    "consistency_proof",
    "inclusion_proof",
    "root_from_inclusion_proof",
    "subtrees_of",
    "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

Subtree = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class TreeHasher:
    """The hash a tree is built with, and the name its signed heads carry."""

    algorithm: str
    digest: Callable[[bytes], bytes]
    digest_size: int = 32

    def empty_root(self) -> bytes:
        return self.digest(b"")

    def leaf(self, data: bytes) -> bytes:
        return self.digest(LEAF_PREFIX + data)

    def node(self, left: bytes, right: bytes) -> bytes:
        return self.digest(NODE_PREFIX + left + right)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


SHA256 = TreeHasher("sha256", _sha256)


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size`` ≥ 2): where the tree divides."""
    return 1 << ((size - 1).bit_length() - 1)


@dataclass(slots=True)
class Frontier:
    """A growing tree's right edge: the roots of its perfect subtrees, largest first.

    Appending a leaf and computing the root each cost O(log n) hashes, whatever the tree's size.
    """

    hasher: TreeHasher
    size: int = 0
    nodes: list[bytes] = field(default_factory=list)

    def append(self, leaf_hash: bytes) -> None:
        merged, carry = leaf_hash, self.size
        while carry & 1:
            merged = self.hasher.node(self.nodes.pop(), merged)
            carry >>= 1
        self.nodes.append(merged)
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return self.hasher.empty_root()
        root = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            root = self.hasher.node(left, root)
        return root


def subtrees_of(hasher: TreeHasher, leaf_hashes: Sequence[bytes]) -> Subtree:
    """A ``subtree(start, end)`` over leaf hashes held in memory (small trees, tests)."""

    def subtree(start: int, end: int) -> bytes:
        frontier = Frontier(hasher)
        for leaf_hash in leaf_hashes[start:end]:
            frontier.append(leaf_hash)
        return frontier.root()

    return subtree


def inclusion_proof(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 §2.1.3.1), nearest first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            path.append(subtree(middle, end))
            end = middle
        else:
            path.append(subtree(start, middle))
            start = middle
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, subtree: Subtree) -> list[bytes]:
    """The proof that the tree of ``old_size`` leaves is a prefix of the tree of ``new_size`` (§2.1.4.1)."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    path: list[bytes] = []
    start, end, remaining, whole = 0, new_size, old_size, True
    while remaining != end - start:
        middle = start + _split(end - start)
        if remaining <= middle - start:
            path.append(subtree(middle, end))
            end = middle
        else:
            path.append(subtree(start, middle))
            remaining -= middle - start
            start = middle
            whole = False
    if not whole:
        path.append(subtree(start, end))
    path.reverse()
    return path


def root_from_inclusion_proof(
    hasher: TreeHasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """The root that ``proof`` leads to from the leaf (RFC 9162 §2.1.3.2), or None if it cannot fit."""
    if not 0 <= index < size:
        return None
    position, last = index, size - 1
    root = leaf_hash
    for sibling in proof:
        if last == 0:
            return None
        if position & 1 or position == last:
            root = hasher.node(sibling, root)
            while not position & 1 and position != 0:
                position >>= 1
                last >>= 1
        else:
            root = hasher.node(root, sibling)
        position >>= 1
        last >>= 1
    return root if last == 0 else None


def verify_inclusion(
    hasher: TreeHasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows the leaf at ``index`` in the tree of ``size`` leaves whose root is ``root``."""
    return root_from_inclusion_proof(hasher, index, size, leaf_hash, proof) == root


def verify_consistency(
    hasher: TreeHasher,
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> bool:
    """Whether ``proof`` shows the tree (``old_size``, ``old_root``) a prefix of (``new_size``, ``new_root``).

    RFC 9162 §2.1.4.2. Equal sizes need an empty proof and equal roots; the empty tree is a prefix of
    every tree, with an empty proof.
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == hasher.empty_root()
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    position, last = old_size - 1, new_size - 1
    while position & 1:
        position >>= 1
        last >>= 1
    old, new = path[0], path[0]
    for node in path[1:]:
        if last == 0:
            return False
        if position & 1 or position == last:
            old = hasher.node(node, old)
            new = hasher.node(node, new)
            while not position & 1 and position != 0:
                position >>= 1
                last >>= 1
        else:
            new = hasher.node(new, node)
        position >>= 1
        last >>= 1
    return last == 0 and old == old_root and new == new_root
