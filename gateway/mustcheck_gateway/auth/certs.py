"""``mustcheck certs init``: a local CA, a server certificate and client certificates (development, tests).

Keys are ECDSA P-256; the server certificate names localhost, 127.0.0.1 and ::1 (and any
extra host names); each client certificate's common name is the identity a caller is
mapped to (``callers add --tls-identity``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=825)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MustCheck development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(path, 0o600)


def _issue(
    subject: str,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server_names: Sequence[str] = (),
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if server_names:
        alternatives: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def init_certificates(directory: Path, *, clients: Sequence[str], hosts: Sequence[str] = ()) -> list[Path]:
    """Write ca.pem/ca.key, server.pem/server.key and <client>.pem/<client>.key; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(stem: str, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        _write_key(directory / f"{stem}.key", key)
        (directory / f"{stem}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        written.extend([directory / f"{stem}.pem", directory / f"{stem}.key"])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("MustCheck development CA")
    save("ca", ca_key, _issue("MustCheck development CA", ca_name, ca_key, ca_key, ca=True))
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = ["localhost", "127.0.0.1", "::1", *hosts]
    save("server", server_key, _issue("localhost", ca_name, ca_key, server_key, server_names=names))
    for client in clients:
        client_key = ec.generate_private_key(ec.SECP256R1())
        save(client, client_key, _issue(client, ca_name, ca_key, client_key, client=True))
    return written
