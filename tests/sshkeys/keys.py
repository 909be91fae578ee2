"""Real OpenSSH public keys for tests, made with `cryptography`."""

from __future__ import annotations

import base64
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

ECDSA_CURVES = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}


def private_key(kind: str) -> PrivateKeyTypes:
    """`ed25519`, `ecdsa256|384|521` or `rsa<bits>`."""
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind.startswith("ecdsa"):
        return ec.generate_private_key(ECDSA_CURVES[int(kind.removeprefix("ecdsa"))])
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise ValueError(kind)


def public_line(key: PrivateKeyTypes, comment: str | None = None) -> str:
    """The key's `.pub` line, as `ssh-keygen` writes it."""
    line = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return f"{line} {comment}" if comment else line


def new_public_line(kind: str = "ed25519", comment: str | None = None) -> str:
    return public_line(private_key(kind), comment)


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    return ssh_string(value.to_bytes(value.bit_length() // 8 + 1, "big"))


def dsa_public_line() -> str:
    """An `ssh-dss` key, encoded by hand: `cryptography` no longer writes them."""
    weak = dsa.generate_private_key(key_size=1024)  # noqa: S505 - refused, as it should be
    numbers = weak.public_key().public_numbers()
    parameters = numbers.parameter_numbers
    blob = ssh_string(b"ssh-dss") + b"".join(
        _mpint(n) for n in (parameters.p, parameters.q, parameters.g, numbers.y)
    )
    return f"ssh-dss {base64.b64encode(blob).decode()}"
