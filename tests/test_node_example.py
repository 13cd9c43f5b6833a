"""examples/node (gRPC from Node.js, built from proto/ alone) runs against a live ``mustcheck demo``: it
checks, batch-checks and verifies every receipt with Node's own Ed25519 and SHA-256, reads both reason
trailers, and verifies the committed vectors. Skipped, saying why, where Node or the example's
node_modules is missing (``npm ci`` in examples/node; CI runs it first, so CI never skips)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import new_citizen_id, new_uscc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "node"
NODE = shutil.which("node")
DEMO = (sys.executable, "-m", "mustcheck_gateway", "demo", "--listen", "127.0.0.1:0")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (Node 20 runs examples/node)"),
    pytest.mark.skipif(
        not (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir(),
        reason="examples/node/node_modules is missing: run `npm ci` in examples/node",
    ),
]


def _node(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(EXAMPLE / "client.mjs"), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLE,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    data_dir = tmp_path_factory.mktemp("node-demo") / "demo"
    process = subprocess.Popen(
        [*DEMO, "--data-dir", str(data_dir), "--subjects", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1", "LANGUAGE": "en"},  # its English line
    )
    assert process.stdout is not None
    port = None
    for line in process.stdout:
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    assert port is not None, "the demo did not start"
    # Keep reading its output so that the tour never blocks on a full pipe.
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    try:
        yield port, data_dir / "demo.token"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        drain.join(10)


def test_the_node_example_checks_batch_checks_and_verifies_receipts(demo: tuple[int, Path]) -> None:
    port, token_file = demo
    subjects = [new_uscc(), new_uscc(), new_citizen_id(), "914403001922038217"]
    ran = _node(
        "--target", f"127.0.0.1:{port}", "--token-file", str(token_file), "--matter", "MOF-0001", *subjects
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    assert any(re.match(r"check: \S+ OUTCOME_\w+, receipt verified \(record \d+", line) for line in lines), (
        lines
    )
    assert "batch: 3 receipts verified, 1 items refused" in lines
    assert "batch item 3: refused, uscc.check_character (REASON_USCC_CHECK_CHARACTER)" in lines
    assert "refusal: NOT_FOUND matter.unknown (REASON_MATTER_UNKNOWN)" in lines
    assert re.search(r"vectors: \d+ valid verified, \d+ invalid refused, tree heads consistent", ran.stdout)
    assert lines[-1] == "node example: ok"


def test_the_node_verifier_refuses_what_the_vectors_say_is_bad(tmp_path: Path) -> None:
    """The Node verifier is no rubber stamp: a bad receipt among the valid ones, or a valid one among the
    bad, makes it fail."""
    vectors = ROOT / "tests" / "vectors"
    for name in ("keys.json", "tree_heads.json"):
        shutil.copy(vectors / name, tmp_path / name)
    receipts = json.loads((vectors / "receipts.json").read_text(encoding="utf-8"))
    assert _node("--vectors-only", "--vectors", str(vectors)).returncode == 0
    swapped = {**receipts, "valid": receipts["invalid"][:1], "invalid": receipts["valid"][:1]}
    for vector in swapped["invalid"]:
        vector["fails"] = "bad_signature"
    (tmp_path / "receipts.json").write_text(json.dumps(swapped), encoding="utf-8")
    ran = _node("--vectors-only", "--vectors", str(tmp_path))
    assert ran.returncode == 1
    assert "FAIL vector answer_bit_flipped should verify: bad_proof" in ran.stdout
    assert "FAIL vector receipt_1 verified but must fail (bad_signature)" in ran.stdout
