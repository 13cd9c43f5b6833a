"""The data directory is the gateway's alone: the directory 0700, every file in it 0600.

It holds raw names and ID numbers (the embedded store), the audit log, its keys and the admin's token.
At start the gateway takes the directory and everything already in it to these modes (files an older
version or another tool left readable included), and runs with umask 077, so that whatever it or its
audit writer process creates later — SQLite's ``-wal`` and ``-shm`` files, the journal, checkpoints,
keys, lock files — is private too, whatever the umask it was started with.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` if need be; bring it and everything in it to 0700 / 0600; set umask 077.

    Symbolic links are left alone and not followed (what they point at is not the gateway's)."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(data_dir, PRIVATE_DIR_MODE)
    for root, directories, files in os.walk(data_dir):
        for name in directories:
            _private(Path(root, name), PRIVATE_DIR_MODE)
        for name in files:
            _private(Path(root, name), PRIVATE_FILE_MODE)


def _private(path: Path, mode: int) -> None:
    status = path.lstat()
    if stat.S_ISLNK(status.st_mode) or stat.S_IMODE(status.st_mode) == mode:
        return
    os.chmod(path, mode)
