"""The audit key ring: HMAC, cipher and signing keys in one directory, each file named by its key id.

Layout of the directory (``DATA_DIR/keys`` by default)::

    suite                      the crypto suite, chosen when the ring is created: international or sm
    hmac-0001-3f9a0c1e.key     32 random bytes, hex; keys the subject hash (HMAC-SHA256 / HMAC-SM3)
    enc-0001-77b2d410.key      random bytes, hex; AES-256-GCM key (32) / SM4-GCM key (16) (reveal)
    sign-0001-c0ffee12.pem     Ed25519 / SM2 private key, PKCS#8 PEM; signs checkpoints and tree heads
    public/sign-0001-c0ffee12.pem   its public key (SubjectPublicKeyInfo PEM), for offline verification

The suite (:mod:`..crypto.suites`) is the deployment's for good: a ring without a ``suite`` file was made
before suites existed and is ``international``; opening a ring for another suite is refused
(:class:`SuiteMismatch`), and rotation makes keys of the ring's suite.

A key id is ``<kind>-<number>-<random>``; the current key of a kind is the one with the highest
number. Rotation adds a new current key and keeps the old ones, so records and checkpoints written
under an old key id still search, decrypt and verify. Secret files are created with mode 0600 (the
directory 0700); public key files may be copied anywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import structlog

from mustcheck.suites import PublicKey, SuiteUnavailable, load_public_key

from ..crypto.suites import DEFAULT_SUITE_NAME, ServerSuite, Signer, server_suite
from .errors import KeyRingError

log = structlog.get_logger("mustcheck.audit")

PUBLIC_DIR_NAME = "public"
SUITE_FILE_NAME = "suite"
SECRET_KEY_BYTES = 32
_KEY_ID = re.compile(r"^(?P<kind>hmac|enc|sign)-(?P<number>\d{4,})-(?P<token>[0-9a-f]{8})$")


class KeyKind(StrEnum):
    HMAC = "hmac"  # keyed subject hash
    ENC = "enc"  # subject encryption
    SIGN = "sign"  # checkpoint signatures


def _suffix(kind: KeyKind) -> str:
    return ".pem" if kind is KeyKind.SIGN else ".key"


def _number(key_id: str) -> int:
    match = _KEY_ID.match(key_id)
    if match is None:
        raise KeyRingError(f"not a key id: {key_id!r}")
    return int(match["number"])


def _write_new(path: Path, content: bytes, mode: int) -> None:
    """Create ``path`` (never overwrite) with ``mode``, durably."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(descriptor, content)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SuiteMismatch(KeyRingError):
    """The key ring is of another crypto suite than the one asked for."""


def load_public_keys(directory: Path) -> dict[str, PublicKey]:
    """The public keys in ``directory`` (``<key id>.pem``; Ed25519 or SM2), by key id: all verification
    needs."""
    keys: dict[str, PublicKey] = {}
    if not directory.is_dir():
        return keys
    for path in sorted(directory.glob("sign-*.pem")):
        if _KEY_ID.match(path.stem) is None:
            continue
        try:
            keys[path.stem] = load_public_key(path.read_bytes())
        except ValueError as error:
            raise KeyRingError(f"{path.name} is not a usable public key: {error}") from None
    return keys


def read_suite(directory: Path) -> ServerSuite:
    """The suite of the key ring in ``directory`` (``international`` for a ring made before suites)."""
    path = directory / SUITE_FILE_NAME
    if not path.exists():
        return server_suite(DEFAULT_SUITE_NAME)
    try:
        return server_suite(path.read_bytes()[:64].decode("utf-8").strip())
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise KeyRingError(f"{path}: not a crypto suite's name ({error})") from None


def _available(suite: ServerSuite) -> None:
    try:
        suite.check_available()
    except SuiteUnavailable as error:
        raise KeyRingError(f"the key ring's crypto suite {suite.name!r} cannot be used: {error}") from None


def _has_keys(directory: Path) -> bool:
    return any(_KEY_ID.match(path.stem) for path in directory.iterdir() if path.is_file())


class KeyRing:
    """All audit keys of one directory, by kind and key id; thread-safe; rotation keeps old keys."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._secrets: dict[KeyKind, dict[str, bytes]] = {KeyKind.HMAC: {}, KeyKind.ENC: {}}
        self._signers: dict[str, Signer] = {}
        if not directory.is_dir():
            raise KeyRingError(f"key directory {directory} does not exist")
        self.suite = read_suite(directory)
        # Moves on every rotation, so users may cache the current keys until it changes.
        self.generation = 0
        self._load()

    @property
    def public_dir(self) -> Path:
        return self.directory / PUBLIC_DIR_NAME

    # -- opening -----------------------------------------------------------------

    @classmethod
    def load_or_create(cls, directory: Path, suite: str | None = None) -> KeyRing:
        """Open the key ring in ``directory``, creating it and a first key of every missing kind.

        A new ring is of ``suite`` (default: international); an existing one must be of ``suite`` if it is
        given, else :class:`SuiteMismatch` names both.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / PUBLIC_DIR_NAME).mkdir(mode=0o755, exist_ok=True)
        suite_file = directory / SUITE_FILE_NAME
        if not suite_file.exists():
            # A ring that has keys but no suite file was made before suites: international.
            chosen = DEFAULT_SUITE_NAME if _has_keys(directory) else (suite or DEFAULT_SUITE_NAME)
            _available(server_suite(chosen))
            # Another process creating the ring at the same time wins: its choice is read below.
            with contextlib.suppress(FileExistsError):
                _write_new(suite_file, f"{chosen}\n".encode(), 0o600)
        ring = cls(directory)
        if suite is not None and ring.suite.name != suite:
            raise SuiteMismatch(
                f"the audit key ring in {directory} is of the crypto suite {ring.suite.name!r}, but "
                f"{suite!r} was asked for (--crypto {suite}): a deployment keeps the suite its key ring was "
                f"created with; start with --crypto {ring.suite.name}, or use a new data directory for "
                f"{suite!r}"
            )
        _available(ring.suite)
        for kind in KeyKind:
            if not ring.key_ids(kind):
                ring.rotate(kind)
        return ring

    def _load(self) -> None:
        for path in sorted(self.directory.iterdir()):
            match = _KEY_ID.match(path.stem)
            if match is None or not path.is_file():
                continue
            kind = KeyKind(match["kind"])
            if path.suffix != _suffix(kind):
                continue
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning(
                    "audit_key_file_too_open", key_id=path.stem, mode=oct(path.stat().st_mode & 0o777)
                )
            if kind is KeyKind.SIGN:
                self._signers[path.stem] = self._read_signer(path)
            else:
                self._secrets[kind][path.stem] = self._read_secret(path, kind)
        self._repair_public_keys()

    def _secret_bytes(self, kind: KeyKind) -> int:
        return self.suite.cipher_key_bytes if kind is KeyKind.ENC else self.suite.hmac_key_bytes

    def _read_secret(self, path: Path, kind: KeyKind) -> bytes:
        try:
            key = bytes.fromhex(path.read_text().strip())
        except ValueError as error:
            raise KeyRingError(f"{path.name} is not a hex-encoded key") from error
        expected = self._secret_bytes(kind)
        if len(key) != expected:
            raise KeyRingError(
                f"{path.name} holds {len(key)} bytes, expected {expected} (suite {self.suite.name})"
            )
        return key

    def _read_signer(self, path: Path) -> Signer:
        try:
            return self.suite.load_signer(path.read_bytes())
        except ValueError as error:
            raise KeyRingError(f"{path.name}: {error} (the key ring's suite is {self.suite.name})") from None

    def _repair_public_keys(self) -> None:
        """Every signing key has its public key in ``public/`` (rewritten if someone removed it)."""
        if not self._signers:
            return
        self.public_dir.mkdir(mode=0o755, exist_ok=True)
        for key_id, signer in self._signers.items():
            public_path = self.public_dir / f"{key_id}.pem"
            if not public_path.exists():
                _write_new(public_path, signer.public_key().pem(), 0o644)

    # -- rotation ----------------------------------------------------------------

    def rotate(self, kind: KeyKind | str) -> str:
        """Add a new current key of ``kind`` (old keys stay usable for reading); return its key id."""
        kind = KeyKind(kind)
        with self._lock:
            existing = self._ids(kind)
            number = max((_number(key_id) for key_id in existing), default=0) + 1
            key_id = f"{kind.value}-{number:04d}-{secrets.token_hex(4)}"
            path = self.directory / f"{key_id}{_suffix(kind)}"
            if kind is KeyKind.SIGN:
                signer = self.suite.generate_signer()
                _write_new(path, signer.private_pem(), 0o600)
                self.public_dir.mkdir(mode=0o755, exist_ok=True)
                _write_new(self.public_dir / f"{key_id}.pem", signer.public_key().pem(), 0o644)
                self._signers[key_id] = signer
            else:
                secret = secrets.token_bytes(self._secret_bytes(kind))
                _write_new(path, (secret.hex() + "\n").encode(), 0o600)
                self._secrets[kind][key_id] = secret
            self.generation += 1
        log.info("audit_key_created", kind=kind.value, key_id=key_id)
        return key_id

    # -- lookups -----------------------------------------------------------------

    def _ids(self, kind: KeyKind) -> list[str]:
        ids = list(self._signers) if kind is KeyKind.SIGN else list(self._secrets[kind])
        return sorted(ids, key=_number)

    def key_ids(self, kind: KeyKind | str) -> list[str]:
        """The key ids of ``kind``, oldest first (the last is current)."""
        with self._lock:
            return self._ids(KeyKind(kind))

    def current_id(self, kind: KeyKind | str) -> str:
        ids = self.key_ids(kind)
        if not ids:
            raise KeyRingError(f"no {KeyKind(kind).value} key in {self.directory}")
        return ids[-1]

    def secret(self, kind: KeyKind | str, key_id: str) -> bytes:
        """The HMAC or AES key ``key_id``."""
        kind = KeyKind(kind)
        if kind is KeyKind.SIGN:
            raise KeyRingError("signing keys are not secrets of fixed length; use signer()")
        with self._lock:
            try:
                return self._secrets[kind][key_id]
            except KeyError:
                raise KeyRingError(f"no {kind.value} key {key_id!r} in {self.directory}") from None

    def secret_keys(self, kind: KeyKind | str) -> Mapping[str, bytes]:
        """Every HMAC or AES key of ``kind``, by key id (a copy)."""
        kind = KeyKind(kind)
        with self._lock:
            return dict(self._secrets[kind])

    def signer(self, key_id: str) -> Signer:
        with self._lock:
            try:
                return self._signers[key_id]
            except KeyError:
                raise KeyRingError(f"no signing key {key_id!r} in {self.directory}") from None

    def public_keys(self) -> dict[str, PublicKey]:
        with self._lock:
            return {key_id: signer.public_key() for key_id, signer in self._signers.items()}
