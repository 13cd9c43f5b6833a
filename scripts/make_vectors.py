"""Write the receipt and tree-head test vectors under tests/vectors/ from a real gateway run.

Starts ``mustcheck demo`` on a free loopback port in a temporary directory, checks a few subjects and a
batch through the SDK (each answer carries an ``mcr2`` receipt), stops the demo, and reads its audit
log for a consistency proof between two signed tree heads. The altered and non-canonical receipts are
made from the valid ones by fixed edits (the same edit every run), so that only the gateway's own
randomness (keys, log id, instants) differs between two runs. docs/receipts.md describes every file;
tests/test_vectors.py and examples/node verify them.

    python scripts/make_vectors.py            # rewrites tests/vectors/*.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mustcheck import Client
from mustcheck.identifiers import organization_code_check_character, uscc_check_character
from mustcheck.merkle import SHA256
from mustcheck.tree_head import canonical_json, leaf_data
from mustcheck_gateway.audit.tree import MerkleTree, latest_head, read_heads, read_node

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "vectors"
MATTER = "MOF-0001"
# Organisation bodies of the subjects checked: fixed, so that the subjects are the same every run.
DEMO = (sys.executable, "-m", "mustcheck_gateway", "demo", "--listen", "127.0.0.1:0")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
BODIES = ("MCKTEA01", "MCKTEA02", "MCKTEA03", "MCKTEA04", "MCKTEA05")


def _uscc(body: str) -> str:
    first17 = "91110108" + body + organization_code_check_character(body)
    return first17 + uscc_check_character(first17)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _start_demo(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [*DEMO, "--data-dir", str(data_dir), "--subjects", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1", "LANGUAGE": "en"},  # its English line
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            return process, int(found.group(1))
    process.kill()
    raise SystemExit("the demo did not start")


def _run_gateway(data_dir: Path) -> tuple[list[str], list[str], dict[str, str]]:
    """Single-check receipts, a batch's receipts and the public keys, from a live demo."""
    process, port = _start_demo(data_dir)
    try:
        token = (data_dir / "demo.token").read_text().strip()
        with Client(f"127.0.0.1:{port}", token=token) as client:
            singles = []
            for body in BODIES[:2]:
                receipt = client.check(_uscc(body), MATTER, purpose="test vectors").receipt
                assert receipt is not None
                singles.append(receipt.compact)
            batch = client.batch_check([_uscc(body) for body in BODIES[2:]], MATTER, purpose="test vectors")
            batched = [
                item.result.receipt.compact for item in batch.items if item.result and item.result.receipt
            ]
            keys = client.receipt_keys()
        pems = {key_id: pem.decode() if isinstance(pem, bytes) else str(pem) for key_id, pem in keys.items()}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return singles, batched, pems


def _parts(receipt: str) -> list[str]:
    return receipt.split(".")


def _with_payload(receipt: str, edit: Any) -> str:
    prefix, payload, proof, signature = _parts(receipt)
    data = json.loads(unb64(payload))
    edit(data)
    return ".".join([prefix, b64(canonical_json(data)), proof, signature])


def _flip_bit(text: str, index: int, bit: int = 1) -> str:
    return text[:index] + chr(ord(text[index]) ^ bit) + text[index + 1 :]


def _altered(receipt: str, proven: str) -> list[dict[str, str]]:
    """Receipts that must fail, each with the failure kind docs/receipts.md names."""
    prefix, payload, proof, signature = _parts(receipt)
    signature_bytes = bytearray(unb64(signature))
    signature_bytes[0] ^= 0x01
    proof_bytes = unb64(_parts(proven)[2])
    data = json.loads(unb64(payload))
    caller = data["answer"]["caller"]

    def answer_bit(d: dict[str, Any]) -> None:
        d["answer"]["caller"] = _flip_bit(caller, 0)

    def head_bit(d: dict[str, Any]) -> None:
        d["head"]["size"] = d["head"]["size"] ^ 1

    def other_kid(d: dict[str, Any]) -> None:
        d["head"]["kid"] = "sign-9999-00000000"

    # The payload with its JSON spelt another way: a space after the first colon, keys in another order.
    spaced = unb64(payload).decode().replace(":", ": ", 1)
    reordered = json.dumps(
        {"head": data["head"], "answer": data["answer"]}, separators=(",", ":"), ensure_ascii=False
    )
    p_prefix, p_payload, _, p_signature = _parts(proven)
    with_dash = next(i for i, part in enumerate(_parts(receipt)[1:], 1) if "-" in part or "_" in part)
    swapped = _parts(receipt)
    swapped[with_dash] = swapped[with_dash].replace("-", "+").replace("_", "/")
    last = ALPHABET.index(signature[-1])
    assert last & 0b1111 == 0, "a 64-byte signature leaves the last character's 4 low bits unused"
    low_bits = signature[:-1] + ALPHABET[last | 1]
    return [
        {
            "name": "answer_bit_flipped",
            "fails": "bad_proof",
            "receipt": _with_payload(receipt, answer_bit),
            "description": "one bit of the answer's caller flipped (payload re-encoded canonically): the "
            "leaf changes, so the inclusion proof no longer leads to the signed root",
        },
        {
            "name": "head_bit_flipped",
            "fails": "bad_signature",
            "receipt": _with_payload(receipt, head_bit),
            "description": "the lowest bit of the head's size flipped: the signed bytes change",
        },
        {
            "name": "signature_altered",
            "fails": "bad_signature",
            "receipt": ".".join([prefix, payload, proof, b64(bytes(signature_bytes))]),
            "description": "the first signature byte's lowest bit flipped",
        },
        {
            "name": "unknown_key_id",
            "fails": "unknown_key",
            "receipt": _with_payload(receipt, other_kid),
            "description": "the head names a key id that is not among the public keys",
        },
        {
            "name": "padded_signature",
            "fails": "not_canonical",
            "receipt": f"{prefix}.{payload}.{proof}.{signature}==",
            "description": "the signature part with base64 padding",
        },
        {
            "name": "standard_alphabet",
            "fails": "not_canonical",
            "receipt": ".".join(swapped),
            "description": "a part in the standard base64 alphabet ('+' and '/' for '-' and '_')",
        },
        {
            "name": "whitespace_inside",
            "fails": "not_canonical",
            "receipt": f"{prefix}.{payload[:40]} {payload[40:]}.{proof}.{signature}",
            "description": "a space inside the payload part",
        },
        {
            "name": "trailing_newline",
            "fails": "not_canonical",
            "receipt": receipt + "\n",
            "description": "a line break after the receipt (a caller strips it before verifying)",
        },
        {
            "name": "unused_bits_set",
            "fails": "not_canonical",
            "receipt": f"{prefix}.{payload}.{proof}.{low_bits}",
            "description": "the signature's last character with an unused low bit set (a lenient decoder "
            "reads the same bytes)",
        },
        {
            "name": "payload_not_canonical_json",
            "fails": "not_canonical",
            "receipt": f"{prefix}.{b64(spaced.encode())}.{proof}.{signature}",
            "description": "the payload JSON with a space after the first colon",
        },
        {
            "name": "payload_keys_reordered",
            "fails": "not_canonical",
            "receipt": f"{prefix}.{b64(reordered.encode())}.{proof}.{signature}",
            "description": "the payload JSON with head before answer",
        },
        {
            "name": "proof_truncated_by_one_hash",
            "fails": "bad_proof",
            "receipt": f"{p_prefix}.{p_payload}.{b64(proof_bytes[:-32])}.{p_signature}",
            "description": "the inclusion proof without its last (top) hash",
        },
        {
            "name": "proof_truncated_by_one_byte",
            "fails": "bad_proof",
            "receipt": f"{p_prefix}.{p_payload}.{b64(proof_bytes[:-1])}.{p_signature}",
            "description": "the inclusion proof one byte short: not a whole number of hashes",
        },
        {
            "name": "proof_without_record_hash",
            "fails": "malformed",
            "receipt": f"{p_prefix}.{p_payload}.{b64(proof_bytes[:16])}.{p_signature}",
            "description": "the proof part shorter than the 32-byte record hash",
        },
        {
            "name": "three_parts",
            "fails": "malformed",
            "receipt": f"{prefix}.{payload}.{signature}",
            "description": "a part missing",
        },
        {
            "name": "unknown_version",
            "fails": "malformed",
            "receipt": f"mcr3.{payload}.{proof}.{signature}",
            "description": "a prefix other than mcr2 (and mcr1)",
        },
    ]


def _answer_of(receipt: str) -> dict[str, Any]:
    payload = json.loads(unb64(_parts(receipt)[1]))
    answer, head = payload["answer"], payload["head"]
    proof = unb64(_parts(receipt)[2])
    return {
        "seq": answer["seq"],
        "caller": answer["caller"],
        "matter": answer["matter"],
        "outcome": answer["outcome"],
        "log": head["log"],
        "size": head["size"],
        "kid": head["kid"],
        "record_hash": proof[:32].hex(),
        "proof_hashes": (len(proof) - 32) // 32,
    }


def _tree_heads(data_dir: Path, first_receipt: str) -> dict[str, Any]:
    """Two signed heads of the run's log and the consistency proof between them, and a leaf worked out."""
    connection = sqlite3.connect(f"file:{data_dir / 'audit.sqlite3'}?mode=ro", uri=True)
    try:
        heads = read_heads(connection)
        newest = latest_head(connection)
        assert newest is not None
        payload = json.loads(unb64(_parts(first_receipt)[1]))
        old_size = int(payload["head"]["size"])
        old = next(head for head in heads if head.size == old_size)
        tree = MerkleTree(SHA256, newest.size, lambda level, index: read_node(connection, level, index))
        proof = tree.consistency(old.size, newest.size)
        assert tree.root_at(old.size) == old.root and tree.root() == newest.root
    finally:
        connection.close()
    answer = payload["answer"]
    record_hash = unb64(_parts(first_receipt)[2])[:32].hex()
    data = leaf_data(answer, record_hash)
    return {
        "old": json.loads(old.to_json()),
        "new": json.loads(newest.to_json()),
        "old_signed_bytes_b64url": b64(old.signed_bytes()),
        "consistency_proof": [b64(node) for node in proof],
        "leaf": {
            "answer": answer,
            "record": record_hash,
            "leaf_data_b64url": b64(data),
            "leaf_hash_hex": SHA256.leaf(data).hex(),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "demo"
        singles, batched, pems = _run_gateway(data_dir)
        heads = _tree_heads(data_dir, singles[0])
    valid = singles + batched
    proven = max(valid, key=lambda r: len(_parts(r)[2]))  # the longest inclusion proof, for truncation
    receipts = {
        "comment": "mcr2 receipts from one gateway run (scripts/make_vectors.py); docs/receipts.md says "
        "how to verify them and what each failure kind means",
        "valid": [
            {"name": f"receipt_{i + 1}", "receipt": r, "expect": _answer_of(r)} for i, r in enumerate(valid)
        ],
        "invalid": _altered(singles[0], proven),
    }
    raw_keys = {}
    for key_id, pem in pems.items():
        key = serialization.load_pem_public_key(pem.encode())
        assert isinstance(key, Ed25519PublicKey)
        raw_keys[key_id] = b64(key.public_bytes_raw())
    keys = {
        "comment": "the gateway's receipt public keys: SubjectPublicKeyInfo PEM, and the raw 32-byte "
        "Ed25519 key in unpadded base64url",
        "public_keys_pem": pems,
        "public_keys_raw": raw_keys,
    }
    options.out.mkdir(parents=True, exist_ok=True)
    for name, content in (("keys.json", keys), ("receipts.json", receipts), ("tree_heads.json", heads)):
        (options.out / name).write_text(
            json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"wrote {(options.out / name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
