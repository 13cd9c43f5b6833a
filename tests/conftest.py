"""Fixtures that start the real thing: the gateway on 127.0.0.1:0 with the real policies/ folder
and a temporary store; tests talk to it through the SDK over the network. The gateway and the store
fixtures run on every backend: SQLite, and PostgreSQL when ``MUSTCHECK_TEST_POSTGRES`` is set (else
those cases are skipped, saying why). The gateway runs once per crypto suite too (international and
sm, docs/crypto.md), and ``crypto_suite`` parametrises a test that makes its own log or gateway."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.logs import configure_logging
from mustcheck_gateway.policy import PolicySet, load_policies
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread
from mustcheck_gateway.store import SqliteStore
from mustcheck_gateway.store.postgres import PostgresStore

from backends import BACKENDS, StoreAt, store_at
from provision import provision

REPO = Path(__file__).resolve().parents[1]
POLICY_DIR = REPO / "policies"
TEST_DEPARTMENT = "approval"
TEST_CALLER = "tester"

configure_logging(level="warning")  # operational logs go to stderr, never into a command's stdout
# The command line speaks the locale's language: tests read English unless they choose one
# (tests/test_i18n.py), whatever the machine's locale.
os.environ["LANGUAGE"] = "en"
# Property tests must not fail on a slow example when the machine is busy (2 cores, gateways running).
settings.register_profile("mustcheck", deadline=None)
# scripts/mutation runs a module's tests once per mutant: fewer examples keep a run within the hour.
settings.register_profile("mutation", deadline=None, max_examples=15)
settings.load_profile(os.environ.get("MUSTCHECK_HYPOTHESIS_PROFILE", "mustcheck"))


@pytest.fixture(scope="session")
def policy() -> PolicySet:
    return load_policies(POLICY_DIR)


@pytest.fixture(params=BACKENDS)
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreAt]:
    """A fresh, empty store location on each backend (PostgreSQL: a schema of its own)."""
    with store_at(request.param, tmp_path) as location:
        yield location


@pytest.fixture
def store(store_location: StoreAt) -> Iterator[SqliteStore | PostgresStore]:
    opened = store_location.open()
    yield opened
    opened.close()


CRYPTO_SUITES = ("international", "sm")


@pytest.fixture(params=CRYPTO_SUITES)
def crypto_suite(request: pytest.FixtureRequest) -> str:
    """A crypto suite's name, once for each: for tests that open their own audit log or gateway."""
    return str(request.param)


@pytest.fixture(
    scope="session",
    params=[(backend, suite) for backend in BACKENDS for suite in CRYPTO_SUITES],
    ids=[f"{backend}-{suite}" for backend in BACKENDS for suite in CRYPTO_SUITES],
)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway every end-to-end test talks to, once on each backend (PostgreSQL: a fresh schema) and
    crypto suite."""
    backend, suite = request.param
    with store_at(backend, tmp_path_factory.mktemp("gateway")) as location:
        config = GatewayConfig(
            data_dir=location.data_dir,
            listen="127.0.0.1:0",
            policy_dir=POLICY_DIR,
            store_url=location.url,
            crypto=suite,
        )
        with GatewayThread(config) as running:
            yield running


@pytest.fixture(scope="session")
def gateway_suite(gateway: Gateway) -> str:
    """The crypto suite of the session's gateway (its key ring's)."""
    assert is_audit_log(gateway.audit)
    return gateway.audit.keyring.suite.name


@pytest.fixture(scope="session")
def target(gateway: Gateway) -> str:
    return f"127.0.0.1:{gateway.port}"


@pytest.fixture(scope="session")
def admin_token(gateway: Gateway) -> str:
    assert gateway.admin_token_file is not None
    return gateway.admin_token_file.read_text().strip()


@pytest.fixture(scope="session")
def token(target: str, admin_token: str) -> str:
    """A caller of department ``approval`` granted every matter and both subject kinds, unmasked nothing."""
    return provision(target, admin_token, TEST_CALLER, department=TEST_DEPARTMENT)


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
