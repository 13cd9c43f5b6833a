"""Offline receipt verification rate and receipt size (issue 14's targets: ≥ 5,000 receipts/s on one
core; ≤ 2 KB at 10^8 records).

    python benchmarks/receipt_bench.py [--records 100000000] [--receipts 20000]

Builds genuine ``mcr2`` receipts for the newest records of a log of ``--records`` records without
building the whole log (older records are stood for by opaque subtree hashes). Verifies them with
``mustcheck.verify_receipt`` on one thread, twice: every receipt under a head of its own (single
checks: each head's signature is checked), and batches of 100 sharing a head (the SDK checks a head's
signature once). Prints one JSON line: receipts per second (wall) and per CPU second, each way,
and the longest receipt in bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mustcheck import verify_receipt
from mustcheck.merkle import SHA256, inclusion_proof
from mustcheck.receipts import encode_receipt
from mustcheck.tree_head import leaf_data, sign_tree_head

KEY_ID = "sign-0001-d0d99fb1"


def _answer(seq: int, at: str) -> dict[str, object]:
    return {
        "at": at,
        "caller": "approval-system-of-a-province",
        "key": "hmac-0001-91704397",
        "matter": "MOHURD-0001",
        "measures": ["I-EXEMPLAR", "J-RESTRICT-1"],
        "outcome": "restrictions",
        "seq": seq,
        "subject": os.urandom(32).hex(),
        "version": 123456,
    }


def receipts(count: int, records: int, per_head: int, key: Ed25519PrivateKey) -> list[str]:
    """``count`` receipts for the newest records of a log of ``records``, ``per_head`` to a head.

    The log's older records are stood for by opaque subtree hashes (any subtree wholly before the
    group's first record hashes its bounds): a consistent tree, so the proofs and roots are genuine.
    """
    made: list[str] = []
    at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    for first in range(0, count, per_head):
        size = records - count + first + per_head
        start = size - per_head
        group = [(_answer(seq, at), os.urandom(32).hex()) for seq in range(start + 1, size + 1)]
        leaves = [SHA256.leaf(leaf_data(answer, record_hash)) for answer, record_hash in group]
        memo: dict[tuple[int, int], bytes] = {}

        def subtree(
            low: int,
            high: int,
            start: int = start,
            leaves: list[bytes] = leaves,
            memo: dict[tuple[int, int], bytes] = memo,
        ) -> bytes:
            found = memo.get((low, high))
            if found is None:
                if high <= start:
                    found = hashlib.sha256(f"{low}-{high}".encode()).digest()
                elif high - low == 1:
                    found = leaves[low - start]
                else:
                    middle = low + (1 << ((high - low - 1).bit_length() - 1))
                    found = SHA256.node(subtree(low, middle), subtree(middle, high))
                memo[(low, high)] = found
            return found

        head = sign_tree_head("0123456789abcdef", size, subtree(0, size), at, KEY_ID, key)
        made += [
            encode_receipt(answer, record_hash, inclusion_proof(seq - 1, size, subtree), head)
            for seq, (answer, record_hash) in enumerate(group, start=start + 1)
        ]
    return made


def rate(items: list[str], keys: dict[str, bytes]) -> tuple[float, float]:
    """Receipts verified per second of wall time, and per second of this process's CPU time (one
    thread: what one core gives, whatever else the machine runs)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for item in items:
        verify_receipt(item, keys)
    return len(items) / (time.perf_counter() - wall), len(items) / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10**8)
    parser.add_argument("--receipts", type=int, default=20_000)
    options = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    # As a verifier has them (`receipts keys`, Client.receipt_keys()): PEM bytes by key id.
    keys = {
        KEY_ID: key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    }
    own = receipts(options.receipts, options.records, 1, key)
    batched = receipts(options.receipts, options.records, 100, key)
    own_wall, own_cpu = rate(own, keys)
    batch_wall, batch_cpu = rate(batched, keys)
    figures = {
        "records": options.records,
        "receipts_per_s_own_head": round(own_wall),
        "receipts_per_cpu_s_own_head": round(own_cpu),
        "receipts_per_s_batch_head": round(batch_wall),
        "receipts_per_cpu_s_batch_head": round(batch_cpu),
        "receipt_bytes_max": max(len(item) for item in own),
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
