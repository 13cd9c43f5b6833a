"""Chinese first, English available: the catalogues, the choice of language, and the command line's
and the report's texts in both languages (by locale and by --lang)."""

from __future__ import annotations

import datetime as dt
import os
import re
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mustcheck import Client, GatewayUnreachable
from mustcheck_gateway.audit import AuditLog
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.cli import main
from mustcheck_gateway.cli.reasons import TRANSPORT_TEXT, explained
from mustcheck_gateway.i18n import LOCALE_DIR, activate, language_from_environment
from mustcheck_gateway.report import FONT_STACK, CoverageRow, Names, Verification, render
from mustcheck_gateway.server import Gateway

from conftest import REPO
from factories import new_uscc
from provision import provision

sys.path.insert(0, str(REPO / "scripts"))
from compile_catalogues import catalogues, compiled, missing, parse_po

CATALOGUE = LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "mustcheck.po"
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


@pytest.fixture(autouse=True)
def english_afterwards() -> Iterator[None]:
    """Each test chooses its language; the next one finds English again."""
    yield
    activate("en")


@pytest.fixture
def chinese_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LOCALE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")


@pytest.fixture
def english_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LOCALE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "en_US.UTF-8")


@pytest.fixture
def token_path(token: str, tmp_path: Path) -> str:
    path = tmp_path / "caller.token"
    path.write_text(token)
    return str(path)


# -- the catalogues -----------------------------------------------------------------------------


def test_committed_mo_files_are_compiled_from_their_po() -> None:
    found = catalogues()
    assert CATALOGUE in found
    for po in found:
        mo = po.with_suffix(".mo")
        assert mo.is_file() and mo.read_bytes() == compiled(po), (
            f"{mo} is stale: run scripts/compile_catalogues.py"
        )


def test_every_text_in_the_code_has_a_chinese_translation() -> None:
    assert missing(CATALOGUE) == {}


def _fields(text: str) -> set[str]:
    named = {name for _, name, _, _ in string.Formatter().parse(text) if name}
    return named | set(re.findall(r"%\(\w+\)[sr]|%[sr]", text))


def test_translations_keep_every_placeholder() -> None:
    for msgid, msgstr in parse_po(CATALOGUE.read_text(encoding="utf-8")).items():
        if msgid:
            assert _fields(msgid.split("\0")[0]) == _fields(msgstr.split("\0")[0]), msgid


def test_the_wheel_carries_the_catalogues() -> None:
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["mustcheck_gateway"]
    assert "locale/*/LC_MESSAGES/*.mo" in patterns and "locale/*/LC_MESSAGES/*.po" in patterns
    assert (
        CATALOGUE.with_suffix(".mo")
        .relative_to(REPO / "gateway" / "mustcheck_gateway")
        .match("locale/*/LC_MESSAGES/*.mo")
    )


# -- choosing the language ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "zh_TW.UTF-8"}, "zh"),
        ({"LC_ALL": "zh_CN.GB18030", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "C"}, "zh"),
        ({"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"),
        ({"LANGUAGE": "en:zh", "LANG": "zh_CN.UTF-8"}, "en"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANG": "de_DE.UTF-8"}, "en"),
        ({}, "en"),
    ],
)
def test_the_locale_chooses_the_language(environ: dict[str, str], language: str) -> None:
    assert language_from_environment(environ) == language


# -- check, an error, argparse, in both languages --------------------------------------------------


def _check(target: str, token_path: str, *global_options: str) -> list[str]:
    return [*global_options, "check", new_uscc(), "--matter", "MOF-0001", "--gateway", target]


@pytest.mark.usefixtures("chinese_locale")
def test_check_speaks_chinese_where_the_locale_is_chinese(
    target: str, token_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_check(target, token_path), "--token-file", token_path]) == 0
    out = capsys.readouterr().out
    assert "结果      无记录" in out
    assert "事项      政府采购供应商资格审查 (MOF-0001)" in out  # the matter's name beside its code
    assert "查询时间" in out and "CST (UTC+08:00)" in out
    assert "outcome" not in out and "no record" not in out


@pytest.mark.usefixtures("english_locale")
def test_check_speaks_english_with_an_english_locale_or_lang_en(
    target: str, token_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_check(target, token_path), "--token-file", token_path]) == 0
    out = capsys.readouterr().out
    assert "outcome        no record" in out and "政府采购供应商资格审查 (MOF-0001)" in out
    assert "无记录" not in out
    os.environ["LANG"] = "zh_CN.UTF-8"  # undone by the fixture's monkeypatch
    assert main([*_check(target, token_path, "--lang", "en"), "--token-file", token_path]) == 0
    assert "outcome        no record" in capsys.readouterr().out
    assert main([*_check(target, token_path, "--lang=zh"), "--token-file", token_path]) == 0
    assert "结果      无记录" in capsys.readouterr().out


@pytest.mark.usefixtures("chinese_locale")
def test_an_error_in_chinese_keeps_the_option_and_the_gateways_words(
    target: str, token_path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MUSTCHECK_TOKEN_FILE", raising=False)
    assert main(_check(target, token_path)) == 4
    said = capsys.readouterr().err
    assert "不允许：未提供身份凭证" in said
    assert "--token-file" in said and "MUSTCHECK_TOKEN_FILE" in said
    assert "网关原文：no credentials" in said  # the gateway's English after the translation
    assert main(["--lang", "en", *_check(target, token_path)]) == 4
    said = capsys.readouterr().err
    assert said.startswith("mustcheck: not allowed: no credentials") and "--token-file" in said


@pytest.mark.usefixtures("chinese_locale")
def test_invalid_input_and_argparse_errors_in_both_languages(
    target: str, token_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = ["check", "91110000X", "--matter", "MOF-0001", "--gateway", target, "--token-file", token_path]
    assert main(bad) == 2
    said = capsys.readouterr().err
    assert "输入无效：不是有效的统一社会信用代码 [uscc.length]" in said
    assert main(["--lang", "en", *bad]) == 2
    assert "invalid input: " in capsys.readouterr().err
    assert main(["check", "--gateway", target]) == 2
    said = capsys.readouterr().err
    assert "用法：" in said and "缺少以下必需参数" in said
    assert main(["--lang", "en", "check", "--gateway", target]) == 2
    said = capsys.readouterr().err
    assert "usage:" in said and "the following arguments are required" in said


# -- the report --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auditor_file(target: str, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auditor") / "auditor.token"
    path.write_text(provision(target, admin_token, "i18n-auditor", roles=["auditor"], grant=False))
    return path


def _report(target: str, auditor_file: Path, out: Path, *global_options: str, window: bool = True) -> str:
    command = [
        *global_options,
        "audit",
        "report",
        *(["--since", "2026-10-01", "--until", "2026-11-01"] if window else []),
        "--out",
        str(out),
        "--gateway",
        target,
        "--token-file",
        str(auditor_file),
    ]
    assert main(command) == 0
    return out.read_text(encoding="utf-8")


@pytest.mark.usefixtures("chinese_locale")
def test_the_report_in_chinese_by_locale_and_in_english_by_lang(
    target: str, token: str, auditor_file: Path, tmp_path: Path
) -> None:
    with Client(target, token=token) as client:
        approval = f"APP-I18N-{os.getpid()}"
        client.report_outcome(None, approval, "approved", matter="MOF-0001", subject=new_uscc())
    chinese = _report(target, auditor_file, tmp_path / "zh.html")
    assert '<html lang="zh-CN">' in chinese and "MustCheck 审计报告" in chinese
    assert "2026-10-01 至 2026-10-31（北京时间）" in chinese  # dates, never "(start) – (now)"
    assert "(start)" not in chinese and "(now)" not in chinese
    assert "审计链完好" in chinese and "各部门、各事项的查询覆盖情况" in chinese
    assert FONT_STACK in chinese

    today = _report(target, auditor_file, tmp_path / "today.html", window=False)
    worklist = today[today.index('id="worklist"') : today.index('id="coverage"')]
    assert approval in worklist and "审批未经查询" in worklist  # the exception, listed first

    english = _report(target, auditor_file, tmp_path / "en.html", "--lang", "en")
    assert '<html lang="en">' in english and "MustCheck audit report" in english
    assert "2026-10-01 to 2026-10-31 (China Standard Time)" in english
    assert "Audit chain intact" in english and "审计链完好" not in english


@pytest.mark.usefixtures("chinese_locale")
def test_coverage_shows_names_beside_codes(
    target: str, auditor_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--gateway", target, "--token-file", str(auditor_file)]
    assert main(["audit", "coverage", "--matter", "MOF-0001", *conn]) == 0
    out = capsys.readouterr().out
    assert "无查询" in out and "政府采购供应商资格审查 (MOF-0001) / 财政部 (mof)" in out


def test_the_report_lists_exceptions_first_with_names_beside_codes() -> None:
    activate("en")
    rows = [
        CoverageRow("MOF-0001", "mof", 3, 3, (), 0, 0, (), 0),
        CoverageRow("NDRC-0002", "ndrc", 4, 3, ("APP-7",), 2, 1, (("APP-8", "P-PUBLIC-RESOURCE"),), 2),
    ]
    names = Names(departments={"ndrc": "国家发展和改革委员会"}, matters={"NDRC-0002": "企业投资项目核准"})
    page = render(
        since=None,
        until=None,
        coverage=rows,
        daily=[("2026-10-02", "no_record", 5)],
        verification=Verification(True, 10, 2, ""),
        generated_at=dt.datetime(2026, 10, 30, 20, 0, tzinfo=dt.UTC),  # 2026-10-31 in Beijing
        names=names,
    )
    assert "2026-10-02 to 2026-10-31 (China Standard Time)" in page  # first check to the report's day
    worklist = page[page.index('id="worklist"') : page.index('id="coverage"')]
    assert "3 exceptions to follow up" in worklist
    for item in (
        "approval without a check",
        "APP-7",
        "mandatory measure not applied",
        "APP-8: P-PUBLIC-RESOURCE",
    ):
        assert item in worklist
    assert "2 checks with restrictions never followed by feedback" in worklist
    assert "国家发展和改革委员会 (ndrc)" in worklist and "企业投资项目核准 (NDRC-0002)" in worklist
    coverage = page[page.index('id="coverage"') :]
    # The row with exceptions comes first and stands out; the clean one follows, unmarked.
    assert coverage.index("NDRC-0002") < coverage.index("MOF-0001")
    assert '<tr class="exception"><td>国家发展和改革委员会 (ndrc)' in coverage
    activate("zh")
    chinese = render(
        since=None,
        until=None,
        coverage=rows,
        daily=[],
        verification=Verification(True, 10, 2, ""),
        generated_at=dt.datetime(2026, 10, 30, 20, 0, tzinfo=dt.UTC),
        names=names,
    )
    assert "待跟进异常 3 项" in chinese and "审批未经查询" in chinese and "必须执行的措施未执行" in chinese
    assert "2 次有惩戒结果的查询从未反馈" in chinese
    assert "2026-10-31 至 2026-10-31（北京时间）" in chinese  # no check: the report's own day
    activate("en")


def test_the_font_stack_falls_back_across_the_common_cjk_fonts() -> None:
    for font in (
        "Noto Sans CJK SC",
        "Source Han Sans SC",
        "WenQuanYi Micro Hei",
        "PingFang SC",
        "Microsoft YaHei",
        "SimSun",
    ):
        assert f'"{font}"' in FONT_STACK
    assert FONT_STACK.endswith("sans-serif")


def test_the_sdks_tls_explanations_are_the_ones_translated() -> None:
    """The SDK words a failed handshake in English (it has no catalogues); the command line translates
    those exact words, so they must not drift apart."""
    sdk = " ".join((REPO / "sdk" / "mustcheck" / "_errors.py").read_text(encoding="utf-8").split())
    for words in TRANSPORT_TEXT:
        # The SDK spreads each text over implicitly joined literals: compare without the quotes.
        assert words in sdk.replace('" "', ""), words
    activate("zh")
    error = GatewayUnreachable(f"{TRANSPORT_TEXT[0]} (details)")
    assert explained(error) == "TLS 失败：网关在此端口不使用 TLS（以明文监听） (details)"


# -- the gateway's own commands: serve, demo, demo-data, store -------------------------------------


@pytest.mark.slow
def test_the_demo_tour_in_chinese(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "mustcheck_gateway", "--lang", "zh", "demo", "--exit-after-tour",
        "--subjects", "50", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONUTF8": "1"}
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("MustCheck 演示：已将 50 个信用主体的")
    assert "演示调用方 'demo'（所属部门 'approval'，已获准查询全部事项）的令牌保存在" in out
    assert "[1] 红名单企业（纳税信用 A 级纳税人）通过联合审批提出申请" in out  # a step title
    assert "[2] 黑名单企业（失信被执行人）参加政府采购投标" in out
    assert "就事项 MOF-0001（政府采购供应商资格审查）查询" in out  # the narration
    assert "结果      适用失信惩戒" in out  # the answers, as `check` shows them
    # The invalid ID: its rule in Chinese, the gateway's own words after it.
    assert "已拒绝：不是有效的统一社会信用代码 [uscc.check_character]（网关原文：invalid subject" in out
    assert "从审计员的角度查看以上查询" in out
    (printed,) = [
        line.strip() for line in out.splitlines() if line.strip().startswith("mustcheck audit report")
    ]
    assert "auditor.token" in printed  # the suggested command stays a command
    for english in (
        "MustCheck demo:",
        "A red-listed company",
        "checking ",
        "rejected:",
        "The auditor's view",
    ):
        assert english not in out


def test_serve_and_store_backup_help_in_chinese(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: the phrases are not wrapped apart
    assert main(["--lang", "zh", "serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("用法：mustcheck serve")
    assert "运行网关：在同一端口上提供查询、管理和审计服务" in out
    assert "监听地址（默认 127.0.0.1:50051；端口为 0 时自动选择空闲端口）" in out
    assert "审计日志、密钥和嵌入式数据库所在的数据目录（默认 ./mustcheck-data）" in out
    assert "政策目录（默认：$MUSTCHECK_POLICIES，未设置时使用内置的 policies/）" in out  # shared options too
    assert "运行日志的最低输出级别（默认 info）" in out
    assert "run the gateway" not in out and "address to listen on" not in out
    assert main(["--lang", "zh", "store", "backup", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("用法：mustcheck store backup")
    assert "在网关运行时复制其数据目录" in out and "一个新的（或空的）目录" in out
    assert main(["--lang", "en", "serve", "--help"]) == 0
    assert (
        "address to listen on (default 127.0.0.1:50051; port 0 picks a free one)" in capsys.readouterr().out
    )


def test_refusals_of_serve_store_and_demo_data_in_chinese(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve = ["serve", "--tls-cert", str(tmp_path / "server.pem"), "--data-dir", str(tmp_path / "data")]
    assert main(["--lang", "zh", *serve]) == 2
    assert "mustcheck: 拒绝启动：--tls-cert 和 --tls-key 须同时给出" in capsys.readouterr().err
    assert main(["--lang", "en", *serve]) == 2
    assert "mustcheck: refusing to start: --tls-cert and --tls-key go together" in capsys.readouterr().err
    assert main(["--lang", "zh", "store", "migrate", "--from", "x", "--to", "postgresql://u@h/db"]) == 2
    assert "mustcheck: --from 须为 sqlite:PATH，实际为 'x'" in capsys.readouterr().err
    assert (
        main(["--lang", "zh", "store", "backup", "--data-dir", str(tmp_path), "--out", str(tmp_path / "b")])
        == 1
    )
    assert "mustcheck: 备份失败：" in capsys.readouterr().err
    assert main(["--lang", "zh", "demo-data", "--subjects", "0", "--out", str(tmp_path / "rows.jsonl")]) == 2
    assert "mustcheck: --subjects 至少为 1" in capsys.readouterr().err
    assert main(["--lang", "zh", "demo-data", "--subjects", "5", "--out", str(tmp_path / "rows.jsonl")]) == 0
    assert re.search(r"已将 5 个信用主体的 \d+ 条记录写入 ", capsys.readouterr().err)


@pytest.mark.slow
def test_serve_and_its_backup_speak_chinese(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    serving = subprocess.Popen(
        [
            sys.executable, "-m", "mustcheck_gateway", "--lang", "zh", "serve", "--listen", "127.0.0.1:0",
            "--data-dir", str(data_dir), "--policies", str(REPO / "policies"), "--drain-seconds", "0",
            "--log-level", "error",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUTF8": "1"},
    )  # fmt: skip
    said: list[str] = []
    try:
        assert serving.stderr is not None
        for line in serving.stderr:
            said.append(line)
            if "网关正在监听端口" in line:
                break
        assert f"首次启动：管理员调用方的令牌已保存在 {data_dir / 'admin.token'}（权限 0600）\n" in said, said
        assert re.fullmatch(r"mustcheck 网关正在监听端口 \d+（按 Ctrl-C 停止）\n", said[-1]), said
        assert (
            main(
                ["--lang", "zh", "store", "backup", "--data-dir", str(data_dir), "--out", str(tmp_path / "b")]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert (
            out.startswith(f"已将 {data_dir} 备份到 {tmp_path / 'b'}：数据库 mustcheck.sqlite3")
            and "字节）" in out
        )
    finally:
        serving.terminate()
        serving.wait(30)


@pytest.mark.usefixtures("chinese_locale")
def test_receipts_verify_and_audit_prove_speak_chinese(
    gateway: Gateway, target: str, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(target, token=token) as client:
        receipt = client.check(new_uscc(), "MOF-0001").receipt
    assert receipt is not None and is_audit_log(gateway.audit)
    public = gateway.audit.keyring.directory / "public"
    assert main(["receipts", "verify", receipt.compact, "--public-keys", str(public)]) == 0
    assert capsys.readouterr().out.startswith("有效：回执 ")
    assert main(["--lang", "en", "receipts", "verify", receipt.compact, "--public-keys", str(public)]) == 0
    assert capsys.readouterr().out.startswith("valid: receipt ")
    assert main(["receipts", "verify", receipt.compact[:-4] + "AAAA", "--public-keys", str(public)]) == 1
    assert capsys.readouterr().out.startswith("无效：")
    where = (
        ["--data-dir", str(gateway.audit.path.parent)]
        if isinstance(gateway.audit, AuditLog)
        else ["--store", gateway.audit.url, "--log", gateway.audit.log_id]
    )
    assert main(["audit", "prove", "999999999", *where]) == 2
    assert "不在最新树头的覆盖范围内" in capsys.readouterr().err
