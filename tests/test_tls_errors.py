"""A TLS handshake that fails says which side refused which certificate, through the SDK and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mustcheck import Client, GatewayUnreachable, TLSConfig
from mustcheck_gateway.auth.certs import init_certificates
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import GatewayConfig, GatewayThread, TLSFiles

from conftest import POLICY_DIR
from factories import new_uscc


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two unrelated certificate authorities, each with a server and a client certificate."""
    root = tmp_path_factory.mktemp("tls")
    init_certificates(root / "ours", clients=["approval-system"])
    init_certificates(root / "other", clients=["stranger"])
    return root / "ours", root / "other"


@pytest.fixture(scope="module")
def mutual_tls_port(
    certificates: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    ours, _ = certificates
    tls = TLSFiles(ours / "server.pem", ours / "server.key", client_ca=ours / "ca.pem")
    config = GatewayConfig(
        data_dir=tmp_path_factory.mktemp("mtls"), listen="127.0.0.1:0", policy_dir=POLICY_DIR, tls=tls
    )
    with GatewayThread(config) as gateway:
        yield gateway.port


def _refusal(port: int, tls: TLSConfig | None) -> str:
    # 127.0.0.1, not localhost: the refusal must come from the gateway, not from an IPv6 address it is not on.
    with (
        Client(f"127.0.0.1:{port}", tls=tls, token="mct_x", timeout=3) as client,
        pytest.raises(GatewayUnreachable) as caught,
    ):
        client.check(new_uscc(), "MOF-0001")
    return caught.value.message


def test_a_gateway_certificate_from_another_ca_is_named(
    mutual_tls_port: int, certificates: tuple[Path, Path]
) -> None:
    ours, other = certificates
    said = _refusal(
        mutual_tls_port,
        TLSConfig.from_files(
            other / "ca.pem",
            ours / "approval-system.pem",
            ours / "approval-system.key",
            server_name="localhost",
        ),
    )
    assert said.startswith("TLS failed: this client refused the gateway's certificate")


def test_a_missing_client_certificate_is_named(mutual_tls_port: int, certificates: tuple[Path, Path]) -> None:
    ours, _ = certificates
    said = _refusal(mutual_tls_port, TLSConfig.from_files(ours / "ca.pem"))
    assert said.startswith("TLS failed:") and "requires a client certificate" in said


def test_a_client_certificate_the_gateway_refuses_is_named(
    mutual_tls_port: int, certificates: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours, other = certificates
    said = _refusal(
        mutual_tls_port,
        TLSConfig.from_files(ours / "ca.pem", other / "stranger.pem", other / "stranger.key"),
    )
    assert said.startswith("TLS failed:") and "refused this client's certificate" in said
    # The command line says the same.
    gateway = ["--gateway", f"127.0.0.1:{mutual_tls_port}", "--ca", str(ours / "ca.pem")]
    client = ["--cert", str(other / "stranger.pem"), "--key", str(other / "stranger.key")]
    assert main(["admin", "callers", "list", *gateway, *client]) == 3
    assert "refused this client's certificate" in capsys.readouterr().err


def test_tls_to_a_plaintext_gateway_is_named(certificates: tuple[Path, Path], tmp_path: Path) -> None:
    ours, _ = certificates
    config = GatewayConfig(data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    with GatewayThread(config) as gateway:
        said = _refusal(gateway.port, TLSConfig.from_files(ours / "ca.pem"))
    assert said.startswith("TLS failed: the gateway does not speak TLS")
