"""R11 receipts: on every allowed answer, verifiable offline, refused when altered or unknown."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mustcheck import Client, InvalidReceipt, verify_receipt
from mustcheck.receipts import parse_receipt, sign_receipt
from mustcheck.suites import load_public_key
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.cli import main
from mustcheck_gateway.crypto.suites import server_suite
from mustcheck_gateway.server import Gateway

from factories import new_citizen_id, new_uscc


def test_every_allowed_answer_carries_a_verifiable_receipt(target: str, token: str, gateway: Gateway) -> None:
    subject = new_uscc()
    with Client(target, token=token) as client:
        result = client.check(subject, "MOF-0001", purpose="资格审查")
        batch_subjects = [new_citizen_id(), "914403001922038217", new_uscc()]
        batch = client.batch_check(batch_subjects, "MOF-0001")
        keys = client.receipt_keys()
    assert result.receipt is not None
    receipt = verify_receipt(result.receipt.compact, keys)
    assert (receipt.caller, receipt.matter, receipt.outcome) == ("tester", "MOF-0001", result.outcome.value)
    assert receipt.data_version == result.data_version and subject not in receipt.compact
    assert is_audit_log(gateway.audit)
    (record,) = gateway.audit.query(subject=subject, kind="check")
    assert record.seq == receipt.audit_seq and record.subject_hash == receipt.subject_hash
    assert record.at == receipt.issued_at
    assert [item.result.receipt is not None for item in batch.items if item.result] == [True, True]
    assert batch.items[1].error is not None  # a bad item gets no receipt
    # Each item's receipt names its own item's record (the bad item's record lies between them).
    for item, batch_subject in zip(batch.items, batch_subjects, strict=True):
        if item.result is None:
            continue
        assert item.result.receipt is not None
        item_receipt = verify_receipt(item.result.receipt.compact, keys)
        (item_record,) = gateway.audit.query(subject=batch_subject, kind="batch_item")
        assert (item_record.seq, item_record.subject_hash, item_record.outcome, item_record.at) == (
            item_receipt.audit_seq,
            item_receipt.subject_hash,
            item_receipt.outcome,
            item_receipt.issued_at,
        )


def _tamper(compact: str, **changes: object) -> str:
    """The receipt with answer fields (``mcr2``) or fields (``mcr1``) changed, spelt canonically."""
    prefix, payload, *rest = compact.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    (data["answer"] if prefix == "mcr2" else data).update(changes)
    forged = base64.urlsafe_b64encode(
        json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    return ".".join([prefix, forged.rstrip(b"=").decode(), *rest])


ALTERED = "signature does not match|inclusion proof does not lead to the signed root"


def test_altered_or_foreign_receipts_are_refused(target: str, token: str, gateway_suite: str) -> None:
    with Client(target, token=token) as client:
        result = client.check(new_uscc(), "MOF-0001")
        keys = client.receipt_keys()
    assert result.receipt is not None
    compact = result.receipt.compact
    assert compact.startswith("mcr2.")
    with pytest.raises(InvalidReceipt, match=ALTERED):
        verify_receipt(
            _tamper(compact, outcome="no_record" if result.outcome.value != "no_record" else "restrictions"),
            keys,
        )
    with pytest.raises(InvalidReceipt, match=ALTERED):
        verify_receipt(_tamper(compact, caller="someone-else"), keys)
    with pytest.raises(InvalidReceipt, match=ALTERED):
        verify_receipt(_tamper(compact, seq=parse_receipt(compact).audit_seq + 1), keys)
    # A head re-signed by a stranger under the gateway's key id, or a proof cut short.
    prefix, payload, proof, signature = compact.split(".")
    head = parse_receipt(compact).tree_head
    assert head is not None
    assert head.suite is not None and head.suite.name == gateway_suite  # the head names its suite
    stranger = server_suite(gateway_suite).generate_signer()  # a key of the same suite, not the gateway's
    stranger_head = base64.urlsafe_b64encode(stranger.sign(head.signed_bytes()))
    with pytest.raises(InvalidReceipt, match="signature does not match"):
        verify_receipt(f"{prefix}.{payload}.{proof}.{stranger_head.rstrip(b'=').decode()}", keys)
    if len(proof) > 86:  # the record hash and at least one proof hash: drop the last hash
        short = base64.urlsafe_b64encode(base64.urlsafe_b64decode(proof + "=" * (-len(proof) % 4))[:-32])
        with pytest.raises(InvalidReceipt, match=ALTERED):
            verify_receipt(f"{prefix}.{payload}.{short.rstrip(b'=').decode()}.{signature}", keys)
    fields = {
        "id": "x",
        "caller": "tester",
        "matter": "MOF-0001",
        "subject": "00",
        "subject_key": "k",
        "outcome": "no_record",
        "measures": [],
        "data_version": 1,
        "issued_at": "2026-01-01T00:00:00+00:00",
        "audit_seq": 1,
    }
    own_kid = next(iter(keys))
    with pytest.raises(InvalidReceipt, match="signature does not match"):
        verify_receipt(sign_receipt(fields, own_kid, stranger), keys)  # right key id, wrong key
    with pytest.raises(InvalidReceipt, match="not among"):
        verify_receipt(sign_receipt(fields, "sign-9999-unknown", stranger), keys)
    with pytest.raises(InvalidReceipt, match="not a receipt"):
        verify_receipt("hello", keys)


def _lenient_b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_a_receipt_has_one_string_and_every_other_spelling_is_refused(target: str, token: str) -> None:
    with Client(target, token=token) as client:
        result = client.check(new_uscc(), "MOF-0001")
        keys = client.receipt_keys()
    assert result.receipt is not None
    compact = result.receipt.compact
    assert verify_receipt(compact, keys).compact == compact
    parts = compact.split(".")
    prefix, payload, proof, signature = parts
    prefix = f"{prefix}.{payload}"
    payload = proof
    variants = []
    # A part whose length is not a multiple of 3 bytes leaves unused bits in its last character (an
    # Ed25519 signature's 64 bytes: 4; an SM2 DER signature of 70 or 71 bytes: 4 or 2; of 72: none):
    # flipping one spells the same bytes, which a lenient decoder takes.
    index = next((i for i in (3, 2, 1) if len(_lenient_b64(parts[i])) % 3), None)
    if index is not None:
        respelt = parts[index][:-1] + _B64URL[_B64URL.index(parts[index][-1]) ^ 1]
        assert _lenient_b64(respelt) == _lenient_b64(parts[index]) and respelt != parts[index]
        variants.append(".".join([*parts[:index], respelt, *parts[index + 1 :]]))
    variants += [
        f"{prefix}.{payload}.{signature}==",
        f"{prefix}.{payload}=.{signature}",
        f"{prefix}.{payload}.{signature[:20]}!{signature[20:]}",
        f"{prefix}.{payload}.{signature[:20]} {signature[20:]}",
        f" {compact}",
        f"{compact}\n",
        compact.upper(),
    ]
    # The standard alphabet's + and / for - and _, where the receipt has them (ASCII JSON rarely does;
    # a signature lacks both about one time in fifteen).
    variants += [compact.replace(urlsafe, standard, 1) for urlsafe, standard in (("-", "+"), ("_", "/"))]
    variants = [variant for variant in variants if variant != compact]
    # A payload re-spelt as other JSON of the same meaning (white space between its members).
    head_prefix, json_payload = prefix.split(".")
    data = json.loads(_lenient_b64(json_payload))
    spaced = base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).rstrip(b"=").decode()
    variants.append(f"{head_prefix}.{spaced}.{payload}.{signature}")
    for variant in variants:
        with pytest.raises(InvalidReceipt, match=r"canonical|not a receipt|not readable"):
            verify_receipt(variant, keys)
    with pytest.raises(InvalidReceipt, match="canonical JSON"):
        verify_receipt(f"{head_prefix}.{spaced}.{payload}.{signature}", keys)


def test_receipts_verify_offline_from_the_command_line(
    target: str, token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "t"
    token_file.write_text(token)
    keys_file = tmp_path / "keys.json"
    assert (
        main(
            [
                "receipts",
                "keys",
                "--out",
                str(keys_file),
                "--gateway",
                target,
                "--token-file",
                str(token_file),
            ]
        )
        == 0
    )
    with Client(target, token=token) as client:
        result = client.check(new_uscc(), "MOHURD-0001")
    assert result.receipt is not None
    capsys.readouterr()
    assert (
        main(["receipts", "verify", result.receipt.compact, "--public-keys", str(keys_file), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["matter"] == "MOHURD-0001"
    forged = _tamper(result.receipt.compact, matter="MOF-0001")
    assert main(["receipts", "verify", forged, "--public-keys", str(keys_file)]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_a_receipt_signed_before_a_key_rotation_still_verifies(tmp_path: Path, crypto_suite: str) -> None:
    from mustcheck_gateway.server import GatewayConfig, GatewayThread

    from conftest import POLICY_DIR
    from provision import provision

    config = GatewayConfig(
        data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR, crypto=crypto_suite
    )
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        target = f"127.0.0.1:{gateway.port}"
        token = provision(target, gateway.admin_token_file.read_text().strip(), "rotating")
        with Client(target, token=token) as client:
            before = client.check(new_uscc(), "MOF-0001").receipt
    assert main(["audit", "rotate-key", "sign", "--data-dir", str(tmp_path)]) == 0
    with GatewayThread(config) as gateway, Client(f"127.0.0.1:{gateway.port}", token=token) as client:
        after = client.check(new_uscc(), "MOF-0001").receipt
        keys = client.receipt_keys()
    assert before is not None and after is not None and before.key_id != after.key_id
    assert len(keys) == 2
    # rotate-key keeps the key ring's suite: both keys, and both heads, are of it.
    assert {load_public_key(pem).algorithm for pem in keys.values()} == {
        server_suite(crypto_suite).public.signature
    }
    for receipt in (before, after):
        head = parse_receipt(receipt.compact).tree_head
        assert head is not None and head.suite is not None and head.suite.name == crypto_suite
    assert verify_receipt(before.compact, keys).key_id == before.key_id
    assert verify_receipt(after.compact, keys).key_id == after.key_id


def test_a_gateway_without_its_audit_log_still_signs_receipts(tmp_path: Path, crypto_suite: str) -> None:
    """The benchmarks' baseline (``audit_enabled=False``) does a check's other work, receipts included."""
    from mustcheck_gateway.server import GatewayConfig, GatewayThread, NoAudit

    from conftest import POLICY_DIR
    from provision import provision

    config = GatewayConfig(
        data_dir=tmp_path,
        listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        audit_enabled=False,
        crypto=crypto_suite,
    )
    with GatewayThread(config) as gateway:
        assert isinstance(gateway.audit, NoAudit) and gateway.admin_token_file is not None
        target = f"127.0.0.1:{gateway.port}"
        token = provision(target, gateway.admin_token_file.read_text().strip(), "unaudited")
        with Client(target, token=token) as client:
            single = client.check(new_uscc(), "MOF-0001")
            batch = client.batch_check([new_uscc(), "914403001922038217", new_uscc()], "MOF-0001")
            keys = client.receipt_keys()
    receipts = [single.receipt, *(item.result.receipt for item in batch.items if item.result)]
    assert len(receipts) == 3
    for receipt in receipts:
        assert receipt is not None
        verified = verify_receipt(receipt.compact, keys)
        assert verified.audit_seq == 0 and verified.matter == "MOF-0001"
