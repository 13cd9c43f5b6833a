"""Replay equals the receipt: every record names its policy set, the store keeps every set served, and a
replay answers as the original caller with the set in force then (docs/audit-log.md, "Replay").

Real gateways on each backend (SQLite; PostgreSQL when MUSTCHECK_TEST_POSTGRES is set), restarted with a
changed policy folder in between, talked to through the SDK.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mustcheck import Client, InvalidRequest, PermissionDenied, Receipt
from mustcheck_gateway.audit import AuditEvent, AuditLog, AuditRecord, verify_data_dir
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.cli.main import main
from mustcheck_gateway.policy.sets import PolicySetError, digest_of, from_stored, load_served
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread

from backends import BACKENDS, StoreAt, store_at
from conftest import POLICY_DIR
from factories import days, make_entry, new_uscc
from provision import provision

SAMR_ONLY = "P-TEST-SAMR-ONLY"
# Added to the second policy set: a punishment only samr implements, for market access.
EXTRA_MEASURE = f'''
[[measure]]
id = "{SAMR_ONLY}"
kind = "punishment"
text = "测试：仅市场监管部门实施的措施"
mandatory = true
matter_kinds = ["market_access"]
implementing_departments = ["samr"]
subject_kinds = ["organization"]
reaches_responsible_persons = false
issuer = "government"
legal_basis = {{ document = "国发〔2016〕33号", section = "§10" }}
'''
MATTERS = ("SAMR-0002", "MOF-0001")


def changed_policies(folder: Path) -> Path:
    """A copy of policies/ with one measure added (samr only) and samr dropped from another."""
    shutil.copytree(POLICY_DIR, folder)
    measures = folder / "measures.toml"
    text = measures.read_text(encoding="utf-8")
    dropped = text.replace(
        'implementing_departments = ["nfra", "pbc", "csrc", "samr"]',
        'implementing_departments = ["nfra", "pbc", "csrc"]',
    )
    assert dropped != text
    measures.write_text(dropped + EXTRA_MEASURE, encoding="utf-8")
    memoranda = folder / "memoranda.toml"
    text = memoranda.read_text(encoding="utf-8")
    judgment_defaulters = 'measures = ["P-HIGH-CONSUMPTION", "P-EXIT-BAN", "P-LICENSING-STRICT", "P-PROJECT-'
    assert text.count(judgment_defaulters) == 1
    added = text.replace(judgment_defaulters, judgment_defaulters.replace("[", f'["{SAMR_ONLY}", '))
    assert added != text
    memoranda.write_text(added, encoding="utf-8")
    return folder


@dataclass
class Deployment:
    location: StoreAt

    @contextmanager
    def serving(self, policies: Path, audit_store: str | None = None) -> Iterator[Gateway]:
        config = GatewayConfig(
            data_dir=self.location.data_dir,
            listen="127.0.0.1:0",
            policy_dir=policies,
            store_url=self.location.url,
            audit_store=audit_store,
        )
        with GatewayThread(config) as gateway:
            yield gateway


@pytest.fixture(params=BACKENDS)
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    with store_at(request.param, tmp_path / "data") as location:
        yield Deployment(location)


def _records(gateway: Gateway) -> list[AuditRecord]:
    assert is_audit_log(gateway.audit)
    return list(gateway.audit.records())


def _target(gateway: Gateway) -> str:
    return f"127.0.0.1:{gateway.port}"


def _checks(gateway: Gateway, tokens: dict[str, str], subjects: list[str]) -> list[tuple[str, Receipt]]:
    """Every caller checks every subject for every matter, singly and in a batch: (subject, receipt)."""
    receipts: list[tuple[str, Receipt]] = []
    for token in tokens.values():
        with Client(_target(gateway), token=token) as client:
            for matter in MATTERS:
                for subject in subjects:
                    result = client.check(subject, matter)
                    assert result.receipt is not None
                    receipts.append((subject, result.receipt))
                batch = client.batch_check(subjects, matter)
                for item in batch.items:
                    assert item.result is not None and item.result.receipt is not None
                    receipts.append((subjects[item.index], item.result.receipt))
    return receipts


def test_every_receipt_of_a_mixed_run_replays_to_its_answer(deployment: Deployment, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    listed, clean = new_uscc(), new_uscc()
    second_policies = changed_policies(tmp_path / "policies-2")
    with deployment.serving(POLICY_DIR) as gateway:
        assert gateway.admin_token_file is not None
        admin = gateway.admin_token_file.read_text().strip()
        tokens = {
            department: provision(_target(gateway), admin, f"caller-{department}", department=department)
            for department in ("samr", "approval", "mof")
        }
        auditor = provision(_target(gateway), admin, "auditor", roles=["auditor"], grant=False)
        gateway.store.write_entries([make_entry(listed, effective=now - days(10))], actor="t", action="add")
        first = _checks(gateway, tokens, [listed, clean])
    with deployment.serving(second_policies) as gateway:
        # The list changes too: the clean subject is listed now.
        gateway.store.write_entries([make_entry(clean, effective=now - days(1))], actor="t", action="add")
        second = _checks(gateway, tokens, [listed, clean])
        digests = {record.policy_set for record in _records(gateway) if record.kind == "check"}
        assert digests == {load_served(POLICY_DIR).digest, load_served(second_policies).digest}

        # The run is mixed: the policy change altered what samr applies, and departments differ.
        samr_before = {
            r.measure_ids for s, r in first if r.caller == "caller-samr" and r.matter == "SAMR-0002"
        }
        samr_after = {
            r.measure_ids for s, r in second if r.caller == "caller-samr" and r.matter == "SAMR-0002"
        }
        assert any(SAMR_ONLY in ids for ids in samr_after) and not any(
            SAMR_ONLY in ids for ids in samr_before
        )
        assert any("P-FININST-RESTRICT" in ids for ids in samr_before)
        assert not any("P-FININST-RESTRICT" in ids for ids in samr_after)
        approval = {
            r.measure_ids for s, r in second if r.caller == "caller-approval" and r.matter == "SAMR-0002"
        }
        assert approval != samr_after

        with Client(_target(gateway), token=auditor) as client:
            for subject, receipt in first + second:
                replayed = client.check(subject, "", replay_of=receipt)
                assert replayed.outcome.value == receipt.outcome, receipt.receipt_id
                assert tuple(m.id for m in replayed.measures) == receipt.measure_ids, receipt.receipt_id
                assert replayed.data_version == receipt.data_version
                assert replayed.checked_at == receipt.issued_at
                assert replayed.receipt is None  # a replay shows the past; it is no new check
            # The matter may be named (it must be the record's), and the reference given as text.
            subject, receipt = first[0]
            again = client.check(subject, receipt.matter.lower(), replay_of=receipt.receipt_id)
            assert tuple(m.id for m in again.measures) == receipt.measure_ids
            # The old point-in-time view answers as the auditor with today's policies: not the receipt.
            samr_receipt = next(
                r for s, r in first if r.caller == "caller-samr" and r.matter == "SAMR-0002" and s == listed
            )
            view = client.check(
                listed,
                "SAMR-0002",
                as_of_version=samr_receipt.data_version,
                as_of_time=samr_receipt.issued_at,
            )
            assert tuple(m.id for m in view.measures) != samr_receipt.measure_ids

        replays = [r for r in _records(gateway) if r.kind == "replay" and "replay_of" in r.detail]
        assert len(replays) == len(first) + len(second) + 1
        assert replays[0].detail["replay_of"] == first[0][1].receipt_id
        assert replays[0].detail["replayed_department"] in {"samr", "approval", "mof"}


def test_replays_are_refused_by_name(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    subject = new_uscc()
    lost_policies = changed_policies(tmp_path / "policies-lost")
    lost_digest = load_served(lost_policies).digest
    with deployment.serving(lost_policies) as gateway:
        assert gateway.admin_token_file is not None
        admin = gateway.admin_token_file.read_text().strip()
        token = provision(_target(gateway), admin, "caller-samr", department="samr")
        auditor = provision(_target(gateway), admin, "auditor", roles=["auditor"], grant=False)
        gateway.store.write_entries([make_entry(subject, effective=now - days(10))], actor="t", action="add")
        with Client(_target(gateway), token=token) as client:
            lost = client.check(subject, "SAMR-0002").receipt
        assert lost is not None
    _forget_policy_set(deployment.location, lost_digest)
    with deployment.serving(POLICY_DIR) as gateway:
        assert {kept_set.digest for kept_set in gateway.store.policy_sets()} == {
            load_served(POLICY_DIR).digest
        }
        with Client(_target(gateway), token=token) as client:
            kept = client.check(subject, "MOF-0001").receipt
        assert kept is not None
        with Client(_target(gateway), token=auditor) as client:
            assert client.check(subject, "", replay_of=kept).outcome.value == kept.outcome
            with pytest.raises(
                InvalidRequest, match=f"policy set {lost_digest}, which the store does not hold"
            ) as refused:
                client.check(subject, "", replay_of=lost)
            assert refused.value.reason == "replay.policy_set_missing"
            with pytest.raises(InvalidRequest, match="not the one record") as wrong:
                client.check(new_uscc(), "", replay_of=kept)
            assert wrong.value.reason == "replay.subject"
            with pytest.raises(InvalidRequest) as matter:
                client.check(subject, "SAMR-0002", replay_of=kept)
            assert matter.value.reason == "replay.matter"
            with pytest.raises(InvalidRequest) as as_of:
                client.check(subject, "", replay_of=kept, as_of_version=1)
            assert as_of.value.reason == "replay.as_of"
            with pytest.raises(InvalidRequest) as other:
                client.check(subject, "", replay_of=f"0123456789abcdef-{kept.audit_seq}")
            # An embedded log holds only its own replica's records; on PostgreSQL every replica's log is
            # at hand, and this one does not exist.
            shared = deployment.location.url is not None
            assert other.value.reason == ("replay.record" if shared else "replay.other_log")
            for malformed in ("x", "-1", "12-", "1" * 40, "log id-1", "１２", "0", "1\n2"):
                with pytest.raises(InvalidRequest) as bad:
                    client.check(subject, "", replay_of=malformed)
                assert bad.value.reason == "replay.reference", malformed
            with pytest.raises(InvalidRequest) as flood:
                client.check(subject, "", replay_of="a" * 5000 + "-1")
            assert flood.value.reason == "replay_of.too_long"
            with pytest.raises(InvalidRequest) as missing:
                client.check(subject, "", replay_of="999999")
            assert missing.value.reason == "replay.record"
            with pytest.raises(InvalidRequest) as admin_record:
                client.check(subject, "", replay_of="1")  # the bootstrap's admin record
            assert admin_record.value.reason == "replay.not_a_check"
        with (
            Client(_target(gateway), token=token) as client,
            pytest.raises(PermissionDenied, match="auditor"),
        ):
            client.check(subject, "", replay_of=kept)
        # The command line: `mustcheck check SUBJECT --matter M --replay-of RECEIPT|REF`.
        token_file = tmp_path / "auditor.token"
        token_file.write_text(auditor)
        options = ["--gateway", _target(gateway), "--token-file", str(token_file), "--json"]
        for replay_of in (kept.compact, kept.receipt_id):
            capsys.readouterr()
            assert main(["check", subject, "--matter", "MOF-0001", "--replay-of", replay_of, *options]) == 0
            shown = json.loads(capsys.readouterr().out)
            assert shown["outcome"] == kept.outcome
            assert [m["id"] for m in shown["measures"]] == list(kept.measure_ids)
        assert main(["check", subject, "--matter", "SAMR-0002", "--replay-of", lost.compact, *options]) == 2
        assert lost_digest in capsys.readouterr().err
        assert main(["check", subject, "--matter", "MOF-0001", "--replay-of", "mcr2.x", *options]) == 2
        assert "not a receipt" in capsys.readouterr().err
        refusals = [r for r in _records(gateway) if r.kind == "replay" and r.status != "OK"]
        assert refusals and all(r.policy_set == load_served(POLICY_DIR).digest for r in refusals)


def _forget_policy_set(location: StoreAt, digest: str) -> None:
    """What a store without that set looks like (the API never deletes one): removed behind its back."""
    store = location.open()
    try:
        if location.url is None:
            import sqlite3

            from mustcheck_gateway.store import DEFAULT_FILE_NAME

            with sqlite3.connect(location.data_dir / DEFAULT_FILE_NAME) as connection:
                connection.execute("DELETE FROM policy_sets WHERE digest = ?", (digest,))
        else:
            import psycopg

            with psycopg.connect(location.url) as connection:
                connection.execute("DELETE FROM policy_sets WHERE digest = %s", (digest,))
        assert store.policy_set(digest) is None
    finally:
        store.close()


def test_the_digest_is_stable_for_the_same_files_and_changes_with_them(
    deployment: Deployment, tmp_path: Path
) -> None:
    copy = tmp_path / "policies-copy"
    shutil.copytree(POLICY_DIR, copy)
    digest = load_served(POLICY_DIR).digest
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert load_served(copy).digest == digest
    # Comments and layout are not the policies: the same set.
    catalog = copy / "catalog.toml"
    catalog.write_text("# a comment\n\n" + catalog.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_served(copy).digest == digest
    for _ in range(2):
        with deployment.serving(copy) as gateway:
            records = _records(gateway)
            assert records and {r.policy_set for r in records} == {digest}
    text = catalog.read_text(encoding="utf-8")
    catalog.write_text(
        text.replace("decision_tolerance_s = 604800", "decision_tolerance_s = 604801", 1), encoding="utf-8"
    )
    changed = load_served(copy).digest
    assert changed != digest
    with deployment.serving(copy) as gateway:
        kept = gateway.store.policy_sets()
        assert [k.digest for k in kept] == [digest, changed]
        stored = gateway.store.policy_set(changed)
        assert stored is not None and stored.body == load_served(copy).text


def test_records_written_before_digests_verify_and_are_refused_by_name(
    deployment: Deployment, tmp_path: Path
) -> None:
    """An audit log of the previous version (records without a policy set) still verifies; a replay of
    one of its checks is refused by name, never answered with today's policies."""
    subject = new_uscc()
    data_dir = deployment.location.data_dir
    with AuditLog.open(data_dir) as old_log:  # as the previous version wrote its records
        old_seq = old_log.append_sync(
            AuditEvent(
                kind="check",
                caller_id="caller-samr",
                department="samr",
                matter="SAMR-0002",
                subject=subject,
                subject_kind="organization",
                outcome="no_record",
                data_version=0,
            )
        )
    # The previous version's log is the embedded one (on PostgreSQL, `store migrate` moves it in).
    with deployment.serving(POLICY_DIR, audit_store="embedded") as gateway:
        assert gateway.admin_token_file is not None
        admin = gateway.admin_token_file.read_text().strip()
        auditor = provision(_target(gateway), admin, "auditor", roles=["auditor"], grant=False)
        with Client(_target(gateway), token=auditor) as client, pytest.raises(InvalidRequest) as refused:
            client.check(subject, "", replay_of=str(old_seq))
        assert refused.value.reason == "replay.policy_set_unnamed"
        assert "names no policy set" in str(refused.value)
        records = _records(gateway)
        assert records[old_seq - 1].policy_set == ""
        assert records[-1].policy_set == load_served(POLICY_DIR).digest
    report = verify_data_dir(data_dir)
    assert report.ok, report


def test_a_stored_policy_set_is_read_only_under_its_own_digest() -> None:
    served = load_served(POLICY_DIR)
    assert from_stored(served.digest, served.text).policy == served.policy
    altered = served.text.replace('"mandatory":true', '"mandatory":false', 1)
    assert altered != served.text
    with pytest.raises(PolicySetError, match="does not match its digest"):
        from_stored(served.digest, altered)
    for digest in ("md5:" + "0" * 32, "", served.digest.upper(), served.digest[:-1]):
        with pytest.raises(PolicySetError):
            from_stored(digest, served.text)
    # Valid JSON under its digest, but no policy set: refused with what is wrong, never a traceback.
    nonsense = "{}"
    with pytest.raises(PolicySetError, match="cannot be loaded"):
        from_stored(digest_of(nonsense), nonsense)


def test_a_replay_in_a_deployment_of_the_sm_suite_equals_the_receipt(tmp_path: Path) -> None:
    """The subject is compared with the record's keyed hash of the deployment's suite (HMAC-SM3 here)."""
    config = GatewayConfig(
        data_dir=tmp_path / "data", listen="127.0.0.1:0", policy_dir=POLICY_DIR, crypto="sm"
    )
    subject = new_uscc()
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        admin = gateway.admin_token_file.read_text().strip()
        token = provision(_target(gateway), admin, "caller-samr", department="samr")
        auditor = provision(_target(gateway), admin, "auditor", roles=["auditor"], grant=False)
        now = dt.datetime.now(dt.UTC)
        gateway.store.write_entries([make_entry(subject, effective=now - days(3))], actor="t", action="add")
        with Client(_target(gateway), token=token) as client:
            receipt = client.check(subject, "SAMR-0002").receipt
        assert receipt is not None and receipt.measure_ids
        with Client(_target(gateway), token=auditor) as client:
            replayed = client.check(subject, "", replay_of=receipt)
            assert tuple(m.id for m in replayed.measures) == receipt.measure_ids
            with pytest.raises(InvalidRequest) as wrong:
                client.check(new_uscc(), "", replay_of=receipt)
            assert wrong.value.reason == "replay.subject"
