"""examples/java: a JDK-only program checks, batch-checks and verifies receipts over HTTP/JSON against a
live ``mustcheck demo --http``, and verifies the receipt test vectors (tests/vectors/, or, where those are
not committed, a valid and an altered receipt this test takes from the demo)."""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO
from factories import new_uscc

EXAMPLE = REPO / "examples" / "java" / "MustCheckExample.java"
VECTORS = REPO / "tests" / "vectors"

pytestmark = pytest.mark.slow


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        if os.environ.get("CI"):
            pytest.fail("java is missing on CI: .ci/run installs openjdk-17-jdk-headless")
        pytest.skip("java (JDK 17 or later) is not installed: apt-get install openjdk-17-jdk-headless")
    return java


class Demo:
    """``mustcheck demo --http`` as a child process, serving once its tour is done."""

    def __init__(self, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mustcheck_gateway",
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                "--subjects",
                "200",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUTF8": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.base_url = ""
        while True:
            try:
                line = self.lines.get(timeout=120)
            except queue.Empty:
                self.stop()
                raise AssertionError("the demo did not finish its tour") from None
            found = re.search(r"HTTP/JSON binding: (http://[0-9.:]+)/v1/Check", line)
            if found:
                self.base_url = found.group(1)
            if "Ctrl-C stops it" in line:
                break
        assert self.base_url, "the demo printed no HTTP/JSON address"
        self.token_file = data_dir / "demo.token"

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def post(self, method: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            f"{self.base_url}/v1/{method}",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.token_file.read_text().strip()}",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, object] = json.load(response)
            return answer

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path / "demo")
    yield running
    running.stop()


def _flip_signature_bit(receipt: str) -> str:
    parts = receipt.split(".")
    signature = bytearray(base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4)))
    signature[0] ^= 1
    parts[3] = base64.urlsafe_b64encode(bytes(signature)).rstrip(b"=").decode()
    return ".".join(parts)


def _vectors(demo: Demo, directory: Path) -> Path:
    """The committed vectors, or (until they are committed) a valid and an altered receipt of the demo's,
    in the same files (keys.json, receipts.json; docs/receipts.md)."""
    if (VECTORS / "receipts.json").is_file() and (VECTORS / "keys.json").is_file():
        return VECTORS
    answer = demo.post("Check", {"subject": new_uscc(), "matter": "MOF-0001", "purpose": "vectors"})
    receipt = str(answer["receipt"])
    keys = demo.post("ReceiptKeys", {})["publicKeysPem"]
    directory.mkdir()
    (directory / "keys.json").write_text(json.dumps({"public_keys_pem": keys}))
    receipts = {
        "valid": [{"name": "live", "receipt": receipt}],
        "invalid": [
            {"name": "signature_altered", "receipt": _flip_signature_bit(receipt), "fails": "bad_signature"}
        ],
    }
    (directory / "receipts.json").write_text(json.dumps(receipts))
    return directory


def test_the_java_example_checks_and_verifies_receipts_over_http(demo: Demo, tmp_path: Path) -> None:
    java = _java()
    vectors = _vectors(demo, tmp_path / "vectors")
    subject = new_uscc()
    result = subprocess.run(
        [
            java,
            str(EXAMPLE),
            "--base-url",
            demo.base_url,
            "--token-file",
            str(demo.token_file),
            "--subject",
            subject,
            "--matter",
            "MOF-0001",
            "--vectors",
            str(vectors),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"check {subject} for MOF-0001: OUTCOME_NO_RECORD" in output
    assert "batch item 1: refused, uscc.check_character" in output
    assert "an invalid identifier: HTTP 400 REASON_USCC_CHECK_CHARACTER (uscc.check_character)" in output
    assert len(re.findall(r"receipt \S+ verified: record \d+", output)) == 2  # the check's and the batch's
    assert "answer altered: refused (bad_proof)" in output
    assert "signature altered: refused (bad_signature)" in output
    assert re.search(r"vectors: [1-9]\d* valid verified, [1-9]\d* invalid checked", output)
    assert "all receipts verified as expected" in output


def test_the_java_example_fails_on_a_receipt_that_verifies_but_must_not(tmp_path: Path) -> None:
    """The program's own failure path: a 'valid' vector that does not verify makes it exit non-zero."""
    java = _java()
    (tmp_path / "keys.json").write_text(json.dumps({"public_keys_pem": {}}))
    (tmp_path / "receipts.json").write_text(
        json.dumps({"valid": [{"name": "not-a-receipt", "receipt": "mcr2.a.b.c"}], "invalid": []})
    )
    result = subprocess.run(
        [java, str(EXAMPLE), "--vectors", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "vector not-a-receipt should verify" in result.stdout
