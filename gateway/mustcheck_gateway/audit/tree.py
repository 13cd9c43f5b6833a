"""The audit log's Merkle tree (RFC 9162): leaves from records, stored subtree hashes, proofs.

Leaf ``i`` is record ``seq = i + 1``: its hash is the tree hasher's leaf hash of
:func:`mustcheck.tree_head.leaf_data` over the record's answer fields and its chain hash, so the tree is
derivable from the records alone (a crash between the journal and the index loses nothing: the tree
catches up from the records when the writer starts). Every *perfect* subtree's root — the node at
``(level, index)`` covering leaves ``[index·2^level, (index+1)·2^level)`` — is stored once, when it is
complete, in ``audit_tree_nodes``; any ``subtree(start, end)`` a proof needs is a stored node or, at the
right edge, O(log n) of them folded. So inclusion and consistency proofs never reread leaves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mustcheck.merkle import Frontier, TreeHasher, consistency_proof, inclusion_proof
from mustcheck.receipts import encode_receipt_json
from mustcheck.tree_head import TreeHead, canonical_json, leaf_data, leaf_data_json

from .record import RECORD_COLUMNS

_COLUMN = {name: index for index, name in enumerate(RECORD_COLUMNS)}
_RECORD_HASH = _COLUMN["record_hash"]
# A record a prune deleted before its log had a tree: its leaf can no longer be built from its content.
PRUNED_LEAF = b"mustcheck.leaf.pruned_before_tree.v1\n"

Node = tuple[int, int, bytes]  # (level, index, hash)


def answer_fields(row: Sequence[Any]) -> dict[str, Any]:
    """The answer a stored record (a row in :data:`RECORD_COLUMNS` order) records: what a receipt carries."""
    import json

    return {
        "at": row[_COLUMN["at"]],
        "caller": row[_COLUMN["caller_id"]],
        "key": row[_COLUMN["hmac_key_id"]] or "",
        "matter": row[_COLUMN["matter"]],
        "measures": json.loads(row[_COLUMN["measure_ids"]]),
        "outcome": row[_COLUMN["outcome"]],
        "seq": int(row[_COLUMN["seq"]]),
        "subject": row[_COLUMN["subject_hash"]] or "",
        "version": int(row[_COLUMN["data_version"]]),
    }


def record_leaf(hasher: TreeHasher, row: Sequence[Any]) -> bytes:
    """The leaf hash of a stored record."""
    return hasher.leaf(leaf_data(answer_fields(row), str(row[_COLUMN["record_hash"]])))


def commit_leaves(hasher: TreeHasher, rows: Sequence[Sequence[Any]]) -> tuple[list[bytes], list[bytes]]:
    """The leaf hashes of a commit's stored records (as :func:`record_leaf`), and their answers as
    canonical JSON, encoded once for the leaves and for the receipts (:func:`row_receipt`)."""
    answers = [canonical_json(answer_fields(row)) for row in rows]
    leaves = [
        hasher.leaf(leaf_data_json(answer, str(row[_RECORD_HASH])))
        for answer, row in zip(answers, rows, strict=True)
    ]
    return leaves, answers


def row_receipt(answer_json: bytes, row: Sequence[Any], proof: list[bytes], head: TreeHead) -> str:
    """The proof receipt of a stored record whose answer :func:`commit_leaves` encoded."""
    return encode_receipt_json(answer_json, str(row[_RECORD_HASH]), proof, head)


def pruned_leaf(hasher: TreeHasher, seq: int) -> bytes:
    return hasher.leaf(PRUNED_LEAF + str(seq).encode())


def _perfect(start: int, end: int) -> int | None:
    """The level of ``[start, end)`` if it is a perfect aligned subtree, else None."""
    width = end - start  # at least 1: :meth:`MerkleTree.subtree` refuses an empty range
    if width & (width - 1) or start % width:
        return None
    return width.bit_length() - 1


class MerkleTree:
    """A growing tree whose perfect nodes are kept in memory (recent ones) and read from storage."""

    CACHE_LIMIT = 1 << 18

    def __init__(self, hasher: TreeHasher, size: int, read_node: Callable[[int, int], bytes | None]) -> None:
        self.hasher = hasher
        self._read_node = read_node
        self._cache: dict[tuple[int, int], bytes] = {}
        self.pending: list[Node] = []  # nodes made since the last :meth:`take_pending`
        self.frontier = Frontier(hasher)
        # The frontier of a tree of ``size`` leaves: the perfect subtrees of its binary decomposition.
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                self.frontier.nodes.append(self.node(level, start >> level))
                start += 1 << level
        self.frontier.size = size

    @property
    def size(self) -> int:
        return self.frontier.size

    def root(self) -> bytes:
        return self.frontier.root()

    def append(self, leaf_hash: bytes) -> None:
        index, level, merged = self.frontier.size, 0, leaf_hash
        self._keep(0, index, merged)
        carry = index
        while carry & 1:
            merged = self.hasher.node(self.frontier.nodes.pop(), merged)
            carry >>= 1
            level += 1
            self._keep(level, carry, merged)
        self.frontier.nodes.append(merged)
        self.frontier.size += 1

    def _keep(self, level: int, index: int, digest: bytes) -> None:
        self._cache[(level, index)] = digest
        self.pending.append((level, index, digest))

    def take_pending(self) -> list[Node]:
        nodes, self.pending = self.pending, []
        return nodes

    def stored(self) -> None:
        """The pending nodes taken are in storage now: keep the memory cache bounded."""
        if len(self._cache) > self.CACHE_LIMIT:
            self._cache = {key: value for key, value in self._cache.items() if key[0] >= 8}

    def node(self, level: int, index: int) -> bytes:
        found = self._cache.get((level, index))
        if found is None:
            found = self._read_node(level, index)
            if found is None:
                raise LookupError(f"the tree node at level {level}, index {index} is not stored")
            self._cache[(level, index)] = found
        return found

    def subtree(self, start: int, end: int) -> bytes:
        """The root of leaves ``[start, end)`` (``end`` ≤ the size)."""
        if end > self.size:
            raise ValueError(f"leaves up to {end} are not in a tree of {self.size}")
        if not 0 <= start < end:
            raise ValueError(f"no leaves in [{start}, {end}): a subtree holds at least one")
        level = _perfect(start, end)
        if level is not None:
            return self.node(level, start >> level)
        middle = start + (1 << ((end - start - 1).bit_length() - 1))
        return self.hasher.node(self.subtree(start, middle), self.subtree(middle, end))

    def root_at(self, size: int) -> bytes:
        return self.hasher.empty_root() if size == 0 else self.subtree(0, size)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, self.subtree)

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return consistency_proof(old_size, new_size, self.subtree)


# -- SQLite storage ------------------------------------------------------------------


def read_node(connection: sqlite3.Connection, level: int, index: int) -> bytes | None:
    row = connection.execute(
        "SELECT hash FROM audit_tree_nodes WHERE level = ? AND idx = ?", (level, index)
    ).fetchone()
    return None if row is None else bytes(row[0])


def stored_size(connection: sqlite3.Connection) -> int:
    row = connection.execute("SELECT MAX(idx) FROM audit_tree_nodes WHERE level = 0").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def insert_nodes(connection: sqlite3.Connection, nodes: Iterable[Node]) -> None:
    connection.executemany(
        "INSERT OR REPLACE INTO audit_tree_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes
    )


def insert_heads(connection: sqlite3.Connection, heads: Iterable[TreeHead]) -> None:
    connection.executemany(
        "INSERT OR IGNORE INTO audit_tree_heads (size, at, head) VALUES (?, ?, ?)",
        [(head.size, head.at, head.to_json()) for head in heads],
    )


def read_heads(connection: sqlite3.Connection) -> list[TreeHead]:
    """Every stored tree head, smallest first (unreadable rows are verification's business: skipped)."""
    heads = []
    for (text,) in connection.execute("SELECT head FROM audit_tree_heads ORDER BY size, at"):
        try:
            heads.append(TreeHead.from_json(str(text)))
        except ValueError:
            continue
    return heads


def latest_head(connection: sqlite3.Connection) -> TreeHead | None:
    row = connection.execute(
        "SELECT head FROM audit_tree_heads ORDER BY size DESC, at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    try:
        return TreeHead.from_json(str(row[0]))
    except ValueError:
        return None


def stored_tree(connection: sqlite3.Connection, hasher: TreeHasher) -> MerkleTree:
    """The tree as stored (nodes read on demand from ``connection``)."""
    return MerkleTree(
        hasher, stored_size(connection), lambda level, index: read_node(connection, level, index)
    )


def catch_up(connection: sqlite3.Connection, tree: MerkleTree, pruned_through: int) -> int:
    """Append the leaves of the stored records the tree does not cover yet (after a crash between the
    journal and the index, or for a log made before it had a tree), in the caller's transaction.

    Records a prune deleted before the log had a tree get a placeholder leaf. Returns the leaves added.
    """
    from .errors import AuditIntegrityError
    from .sqlite_log import iter_rows

    added = 0
    while tree.size < pruned_through:
        tree.append(pruned_leaf(tree.hasher, tree.size + 1))
        added += 1
    for row in iter_rows(connection, after_seq=tree.size):
        seq = int(row[0])
        if seq != tree.size + 1:
            raise AuditIntegrityError(
                f"the audit tree cannot be built: record {tree.size + 1} is missing before record {seq}"
            )
        tree.append(record_leaf(tree.hasher, row))
        added += 1
        if len(tree.pending) >= 20_000:
            insert_nodes(connection, tree.take_pending())
    insert_nodes(connection, tree.take_pending())
    return added


def consistency_problem(tree: MerkleTree, head: TreeHead) -> str | None:
    """Why the tree does not extend ``head`` (None: a consistency proof shows it does)."""
    if head.size > tree.size:
        first = tree.size + 1
        missing = (
            f"record {first} is missing" if first == head.size else f"records {first}–{head.size} are missing"
        )
        return (
            f"the log ends at record {tree.size} but a tree head signed {head.at} covers {head.size}: "
            f"{missing} (the log was cut or rewound)"
        )
    if head.size == 0:
        return None
    try:
        proof = tree.consistency(head.size, tree.size) if head.size < tree.size else []
        new_root = tree.root_at(tree.size)
    except LookupError as error:
        return f"the tree cannot be checked against the head of size {head.size}: {error}"
    from mustcheck.merkle import verify_consistency

    if not verify_consistency(tree.hasher, head.size, tree.size, head.root, new_root, proof):
        return (
            f"the log's first {head.size} records are not the ones the tree head signed {head.at} covers "
            "(the log was rewritten)"
        )
    return None
