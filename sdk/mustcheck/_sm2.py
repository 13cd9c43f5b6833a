"""SM2 signatures with SM3 (GB/T 32918.2, GM/T 0009): the one module that touches the SM2 library.

The library is ``gmssl-pyx`` (GmSSL 3.2 in C, Apache-2.0), installed with the extra ``mustcheck[sm]``; it
is imported on first use, so that the SDK needs it only where it meets an SM2 signature. Replacing it
means replacing :func:`_library` and the four calls below. Everything around the bare algorithm is done
here, by the standards, so that any SM2 implementation interoperates:

- the message is signed as ``e = SM3(Z || M)`` with ``Z = SM3(ENTL || ID || a || b || xG || yG || xA ||
  yA)`` and the default user id ``1234567812345678`` (GM/T 0009), as OpenSSL's ``-pkeyopt
  distid:1234567812345678`` and GmSSL do;
- a signature is the DER ``SEQUENCE { INTEGER r, INTEGER s }``, in its one (minimal) encoding;
- a public key is a SubjectPublicKeyInfo with ``id-ecPublicKey`` and the SM2 curve's OID
  ``1.2.156.10197.1.301`` (an uncompressed point), a private key PKCS#8 with the same algorithm.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from types import ModuleType

DEFAULT_USER_ID = b"1234567812345678"
EXTRA = "mustcheck[sm]"
PUBLIC_KEY_BYTES = 64  # x || y
PRIVATE_KEY_BYTES = 32

# The SM2 recommended curve (GB/T 32918.5): a, b, the generator G and the order n.
_A = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
_B = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
_G = bytes.fromhex(
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0"
)
_P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)

_EC_PUBLIC_KEY_OID = bytes.fromhex("06072A8648CE3D0201")  # 1.2.840.10045.2.1
_SM2_CURVE_OID = bytes.fromhex("06082A811CCF5501822D")  # 1.2.156.10197.1.301
_ALGORITHM = b"\x30\x13" + _EC_PUBLIC_KEY_OID + _SM2_CURVE_OID


class SM2Unavailable(ImportError):
    """The SM2 library is not installed: the message names the extra that brings it."""


def _library() -> ModuleType:
    try:
        import gmssl_pyx
    except ImportError as error:
        raise SM2Unavailable(
            f"SM2 signatures need the SM2 library: install it with pip install '{EXTRA}'"
        ) from error
    library: ModuleType = gmssl_pyx
    return library


def _openssl_sm3() -> Callable[[bytes], bytes] | None:
    try:
        hashlib.new("sm3", b"")
    except ValueError:
        return None
    return lambda data: hashlib.new("sm3", data).digest()


def _cryptography_sm3(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes

    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _library_sm3() -> Callable[[bytes], bytes] | None:
    try:
        from gmssl_pyx import sm3_hash
    except ImportError:
        return None
    return lambda data: bytes(sm3_hash(data))


# SM3 from the SM2 library where it is installed (GmSSL's C, about twice as fast per call as the next),
# else hashlib's (the system's OpenSSL) where it has one, else the one ``cryptography`` bundles: the
# tree hashes with it, so every leaf and node of an sm log pays its cost.
_SM3: Callable[[bytes], bytes] = _library_sm3() or _openssl_sm3() or _cryptography_sm3


def sm3(data: bytes) -> bytes:
    """SM3 (GB/T 32905) of ``data``."""
    return _SM3(data)


def user_hash(public_key: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """``Z``: SM3 over the signer's id length and id, the curve, and the public key (GB/T 32918.2 §5.5)."""
    return sm3(len(user_id * 8).to_bytes(2, "big") + user_id + _A + _B + _G + public_key)


def message_digest(public_key: bytes, message: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """``e = SM3(Z || M)``: what the SM2 algorithm signs."""
    return sm3(user_hash(public_key, user_id) + message)


def available() -> None:
    """Raise :class:`SM2Unavailable` (naming the extra) if the SM2 library is not installed."""
    _library()


# -- the library's four operations -----------------------------------------------------


def generate() -> tuple[bytes, bytes]:
    """A new key pair: (private key, 32 bytes; public key, x || y, 64 bytes)."""
    public, private = _library().sm2_key_generate()
    return bytes(private), bytes(public)


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """The DER signature of ``e`` (see :func:`message_digest`) with a fresh random ``k``."""
    return bytes(_library().sm2_sign_sm3_digest(private_key, digest))


def sign(private_key: bytes, public_key: bytes, message: bytes) -> bytes:
    """The DER signature of ``message`` under the default user id."""
    return sign_digest(private_key, message_digest(public_key, message))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (DER, in its one encoding) signs ``message`` under ``public_key``."""
    if decode_signature(signature) is None:
        return False
    library = _library()
    try:
        return bool(library.sm2_verify_sm3_digest(public_key, message_digest(public_key, message), signature))
    except library.GmsslInnerError:
        return False


# -- DER: signatures and keys ----------------------------------------------------------------


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_signature(r: int, s: int) -> bytes:
    return _tlv(0x30, _integer(r) + _integer(s))


def _read(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, content, offset after it) of the DER element at ``offset``; ``ValueError`` if cut short."""
    if offset + 2 > len(data):
        raise ValueError("DER element cut short")
    tag, first = data[offset], data[offset + 1]
    offset += 2
    if first & 0x80:
        count = first & 0x7F
        if not 0 < count <= 4 or offset + count > len(data):
            raise ValueError("DER length unreadable")
        size = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    else:
        size = first
    if offset + size > len(data):
        raise ValueError("DER element cut short")
    return tag, data[offset : offset + size], offset + size


def _elements(data: bytes) -> list[tuple[int, bytes]]:
    found, offset = [], 0
    while offset < len(data):
        tag, content, offset = _read(data, offset)
        found.append((tag, content))
    return found


def decode_signature(signature: bytes) -> tuple[int, int] | None:
    """``(r, s)`` of a DER signature in its one minimal encoding with both in ``[1, n-1]``, else None."""
    try:
        tag, body, end = _read(signature, 0)
        parts = _elements(body) if tag == 0x30 and end == len(signature) else []
    except ValueError:
        return None
    if len(parts) != 2 or any(tag != 0x02 for tag, _ in parts):
        return None
    r, s = (int.from_bytes(content, "big", signed=True) for _, content in parts)
    if not (0 < r < _N and 0 < s < _N) or encode_signature(r, s) != signature:
        return None
    return r, s


def public_key_der(public_key: bytes) -> bytes:
    """The SubjectPublicKeyInfo of an SM2 public key (``x || y``)."""
    return _tlv(0x30, _ALGORITHM + _tlv(0x03, b"\x00\x04" + public_key))


def private_key_der(private_key: bytes, public_key: bytes) -> bytes:
    """PKCS#8 of an SM2 key pair (the ECPrivateKey inside carries the public key too)."""
    inner = _tlv(
        0x30,
        _tlv(0x02, b"\x01") + _tlv(0x04, private_key) + _tlv(0xA1, _tlv(0x03, b"\x00\x04" + public_key)),
    )
    return _tlv(0x30, _tlv(0x02, b"\x00") + _ALGORITHM + _tlv(0x04, inner))


def is_sm2_algorithm(algorithm: bytes) -> bool:
    return algorithm == _ALGORITHM


def _on_curve(point: bytes) -> bool:
    x, y = int.from_bytes(point[:32], "big"), int.from_bytes(point[32:], "big")
    a, b = int.from_bytes(_A, "big"), int.from_bytes(_B, "big")
    return x < _P and y < _P and (y * y - (x * x * x + a * x + b)) % _P == 0


def public_key_from_der(der: bytes) -> bytes | None:
    """``x || y`` from an SM2 SubjectPublicKeyInfo (None: not one, or not a point of the curve)."""
    try:
        tag, body, end = _read(der, 0)
        parts = _elements(body) if tag == 0x30 and end == len(der) else []
    except ValueError:
        return None
    if len(parts) != 2 or _tlv(*parts[0]) != _ALGORITHM or parts[1][0] != 0x03:
        return None
    bits = parts[1][1]
    if len(bits) != 2 + PUBLIC_KEY_BYTES or bits[:2] != b"\x00\x04" or not _on_curve(bits[2:]):
        return None
    return bits[2:]


def private_key_from_der(der: bytes) -> bytes | None:
    """The 32-byte private key of an SM2 PKCS#8 (None: not one)."""
    try:
        tag, body, end = _read(der, 0)
        parts = _elements(body) if tag == 0x30 and end == len(der) else []
        if len(parts) < 3 or _tlv(*parts[1]) != _ALGORITHM or parts[2][0] != 0x04:
            return None
        tag, inner, _ = _read(parts[2][1], 0)
        fields = _elements(inner) if tag == 0x30 else []
    except ValueError:
        return None
    if len(fields) < 2 or fields[0] != (0x02, b"\x01") or fields[1][0] != 0x04:
        return None
    private = fields[1][1].rjust(PRIVATE_KEY_BYTES, b"\x00")
    value = int.from_bytes(private, "big")
    return private if len(private) == PRIVATE_KEY_BYTES and 0 < value < _N - 1 else None


def public_from_private(private_key: bytes) -> bytes:
    """``x || y`` of ``d·G`` (used where a PKCS#8 lacks its public key; not on any hot path)."""
    return _multiply(int.from_bytes(private_key, "big"))


def _multiply(scalar: int) -> bytes:
    a = int.from_bytes(_A, "big")
    point: tuple[int, int] | None = None
    addend: tuple[int, int] | None = (int.from_bytes(_G[:32], "big"), int.from_bytes(_G[32:], "big"))

    def add(p: tuple[int, int] | None, q: tuple[int, int] | None) -> tuple[int, int] | None:
        if p is None:
            return q
        if q is None:
            return p
        if p[0] == q[0] and (p[1] + q[1]) % _P == 0:
            return None
        if p == q:
            slope = (3 * p[0] * p[0] + a) * pow(2 * p[1], -1, _P) % _P
        else:
            slope = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P) % _P
        x = (slope * slope - p[0] - q[0]) % _P
        return x, (slope * (p[0] - x) - p[1]) % _P

    while scalar:
        if scalar & 1:
            point = add(point, addend)
        addend = add(addend, addend)
        scalar >>= 1
    assert point is not None
    return point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def pem(label: str, der: bytes) -> bytes:
    lines = base64.encodebytes(der).decode().split()
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


def unpem(text: bytes, label: str) -> bytes | None:
    """The DER inside one PEM block labelled ``label`` (None: there is none)."""
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    start = decoded.find(begin)
    stop = decoded.find(end, start + 1)
    if start < 0 or stop < 0:
        return None
    try:
        return base64.b64decode("".join(decoded[start + len(begin) : stop].split()), validate=True)
    except ValueError:
        return None


def library_version() -> str:
    """The SM2 library's name and version (for benchmarks and reports)."""
    from importlib.metadata import version

    return f"gmssl-pyx {version('gmssl-pyx')}"
