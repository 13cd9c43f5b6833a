"""The audit database's versioned schema, in SQL that SQLite and PostgreSQL both accept.

Each migration is applied once, in order, and recorded in ``schema_migrations`` (as in the list
store). Never edit a released migration: add the next one.
"""

from __future__ import annotations

from ..store.migrations import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "audit records, signed checkpoints and prune anchors",
        (
            """CREATE TABLE audit_records (
                seq BIGINT PRIMARY KEY,
                at TEXT NOT NULL,
                kind TEXT NOT NULL,
                caller_id TEXT NOT NULL,
                department TEXT NOT NULL,
                matter TEXT NOT NULL,
                purpose TEXT NOT NULL,
                authorization_ref TEXT NOT NULL,
                subject_kind TEXT NOT NULL,
                subject_hash TEXT,
                hmac_key_id TEXT,
                subject_enc TEXT,
                enc_key_id TEXT,
                outcome TEXT NOT NULL,
                measure_ids TEXT NOT NULL,
                data_version BIGINT NOT NULL,
                status TEXT NOT NULL,
                latency_us BIGINT NOT NULL,
                detail TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                record_hash TEXT NOT NULL
            )""",
            "CREATE INDEX audit_records_at ON audit_records (at)",
            "CREATE INDEX audit_records_subject ON audit_records (subject_hash)",
            """CREATE TABLE audit_checkpoints (
                kind TEXT NOT NULL,
                seq BIGINT NOT NULL,
                record_hash TEXT NOT NULL,
                at TEXT NOT NULL,
                key_id TEXT NOT NULL,
                signature TEXT NOT NULL,
                PRIMARY KEY (kind, seq)
            )""",
            """CREATE TABLE audit_prune_anchors (
                seq BIGINT PRIMARY KEY,
                record_hash TEXT NOT NULL,
                cut_off TEXT NOT NULL,
                pruned_at TEXT NOT NULL,
                records_deleted BIGINT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "the Merkle tree over the records: perfect subtree roots and signed tree heads",
        (
            """CREATE TABLE audit_tree_nodes (
                level INTEGER NOT NULL,
                idx BIGINT NOT NULL,
                hash BYTEA NOT NULL,
                PRIMARY KEY (level, idx)
            )""",
            """CREATE TABLE audit_tree_heads (
                size BIGINT NOT NULL,
                at TEXT NOT NULL,
                head TEXT NOT NULL,
                PRIMARY KEY (size, at)
            )""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
