"""The data directory is private (issue 13, finding 6): 0700, every file in it 0600, whatever the umask
the gateway was started with — the store and the audit log with their SQLite -wal and -shm files, the
journal, the checkpoints, the keys, the lock files and the tokens."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mustcheck import Client
from mustcheck_gateway.server import GatewayConfig, GatewayThread
from mustcheck_gateway.store import DEFAULT_FILE_NAME, SqliteStore

from conftest import POLICY_DIR
from factories import new_uscc
from provision import provision


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def modes(directory: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(directory.stat().st_mode)}
    for path in directory.rglob("*"):
        found[str(path.relative_to(directory))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(directory: Path) -> dict[str, int]:
    found = modes(directory)
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (directory / name).is_dir() else 0o600)
    }
    assert wrong == {}
    return found


def test_the_data_directory_and_its_files_are_private_whatever_the_umask(
    tmp_path: Path, permissive_umask: None
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o777)
    os.chmod(data_dir, 0o777)
    SqliteStore(data_dir / DEFAULT_FILE_NAME).close()  # left by an earlier version, world-readable
    (data_dir / "notes.txt").write_text("an operator's file\n")
    assert modes(data_dir)["notes.txt"] == 0o666
    config = GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, checkpoint_every=5)
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        target = f"127.0.0.1:{gateway.port}"
        token = provision(target, gateway.admin_token_file.read_text().strip(), "private")
        with Client(target, token=token) as client:
            for _ in range(12):  # past a checkpoint or two
                client.check(new_uscc(), "MOF-0001")
        running = assert_private(data_dir)  # while running: the SQLite -wal and -shm files too
    after = assert_private(data_dir)
    names = set(running) | set(after)
    expected = {
        DEFAULT_FILE_NAME,
        f"{DEFAULT_FILE_NAME}-wal",
        "audit.sqlite3",
        "audit.journal",
        "checkpoints.jsonl",
        "admin.token",
        "keys",
        "notes.txt",
    }
    assert expected <= names, expected - names
    assert any(name.startswith("keys/") and name.endswith(".key") for name in names)
