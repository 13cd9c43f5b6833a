"""Packaging: the SDK stays thin, and the wheel's package list is whole."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import REPO


def test_sdk_imports_no_server_dependency() -> None:
    probe = (
        "import sys, mustcheck\n"
        "mustcheck.Client('127.0.0.1:1').close()\n"
        "banned = {'mustcheck_gateway', 'structlog', 'sqlite3'}\n"
        "print(sorted(banned & {name.split('.')[0] for name in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_gateway_needs_psycopg_only_for_a_postgresql_store() -> None:
    probe = (
        "import sys, tempfile, pathlib\n"
        "from mustcheck_gateway.server import start_gateway\n"
        "from mustcheck_gateway.store import open_store\n"
        "open_store(pathlib.Path(tempfile.mkdtemp())).close()\n"
        "print(sorted({'psycopg', 'psycopg_pool'} & {name.split('.')[0] for name in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_declared_packages_match_the_tree() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    found = set()
    for root, package in (("sdk/mustcheck", "mustcheck"), ("gateway/mustcheck_gateway", "mustcheck_gateway")):
        for init in (REPO / root).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / root)
            found.add(".".join((package, *relative.parts)) if relative.parts else package)
    assert declared - {"mustcheck_gateway.bundled_policies"} == found
    assert config["package-dir"]["mustcheck_gateway.bundled_policies"] == "policies"


def test_sdk_dependencies_are_only_the_chosen_four() -> None:
    imports = set()
    for source in (REPO / "sdk" / "mustcheck").glob("*.py"):
        for line in source.read_text().splitlines():
            words = line.split()
            if line.startswith(("import ", "from ")) and len(words) > 1 and not words[1].startswith("."):
                imports.add(words[1].split(".")[0])
    third_party = imports - set(sys.stdlib_module_names) - {"mustcheck"}
    assert third_party <= {"grpc", "google", "cachetools", "cryptography"}, third_party


def test_policies_ship_in_the_wheel_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "*.toml" in config["package-data"]["mustcheck_gateway.bundled_policies"]
    assert list(Path(REPO / "policies").glob("*.toml"))


@pytest.mark.slow
def test_the_wheel_carries_the_compiled_catalogues(tmp_path: Path) -> None:
    needed = 69  # pyproject.toml's [build-system] requires setuptools>=69
    try:
        installed = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("setuptools is not installed: the wheel cannot be built offline here")
    if int(installed.split(".")[0]) < needed:
        pytest.skip(
            f"setuptools {installed} is older than the build needs (>={needed}): no offline wheel here"
        )
    build = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation"]
    leftover = REPO / "build"  # setuptools' working folder in the checkout: removed if this test made it
    made_here = not leftover.exists()
    try:
        subprocess.run([*build, "-q", "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    finally:
        if made_here:
            shutil.rmtree(leftover, ignore_errors=True)
    (wheel,) = tmp_path.glob("mustcheck-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for po in (REPO / "gateway" / "mustcheck_gateway" / "locale").glob("*/LC_MESSAGES/*.po"):
        relative = po.relative_to(REPO / "gateway").as_posix()
        assert relative in names and relative.removesuffix(".po") + ".mo" in names
