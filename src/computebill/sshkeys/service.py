"""SSH keys: a pasted OpenSSH public key read (its type, canonical form, comment and fingerprint,
or the one reason it is refused), and an account's keys added, listed and deleted."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.errors import AppError, NotFound
from computebill.sshkeys.models import SshKey

ACCEPTED_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
MIN_RSA_BITS = 2048
# A 16384-bit RSA key is about 2,800 characters; anything much longer is not a public key.
MAX_KEY_CHARS = 8192
MAX_COMMENT_CHARS = 255
MAX_KEYS_PER_ACCOUNT = 50
_PRIVATE_MARKERS = ("PRIVATE KEY", "PuTTY-User-Key-File")


class InvalidSshKey(AppError):
    """A public key the platform does not accept; `code` names why."""

    status = 422
    code = "invalid_ssh_key"

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail, errors=[{"field": "public_key", "message": detail}])
        self.code = code


class SshKeyExists(AppError):
    status = 409
    code = "ssh_key_exists"


class TooManySshKeys(AppError):
    status = 409
    code = "too_many_ssh_keys"


class UnknownSshKeys(AppError):
    status = 422
    code = "unknown_ssh_key"


@dataclass(frozen=True, slots=True)
class PublicKey:
    key_type: str
    public_key: str  # canonical: `type base64`, no comment
    comment: str | None
    fingerprint: str


def _unknown_type() -> InvalidSshKey:
    return InvalidSshKey(
        "unknown_key_type", f"The key type must be one of {', '.join(ACCEPTED_TYPES)}."
    )


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a key blob (the wire form the base64 encodes)."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _has_control_characters(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def parse_public_key(text: str) -> PublicKey:
    """One line as in `~/.ssh/id_ed25519.pub`: `type base64 [comment]`."""
    text = text.strip()
    if not text:
        raise InvalidSshKey("empty_key", "Paste a public key, such as ~/.ssh/id_ed25519.pub.")
    if len(text) > MAX_KEY_CHARS:
        raise InvalidSshKey("key_too_long", f"A public key is at most {MAX_KEY_CHARS} characters.")
    if any(marker in text for marker in _PRIVATE_MARKERS):
        raise InvalidSshKey(
            "private_key",
            "This is a private key: never share it. Paste the .pub file's one line instead.",
        )
    if _has_control_characters(text):
        raise InvalidSshKey(
            "control_characters", "A public key is one line of printable characters."
        )
    parts = text.split(None, 2)
    key_type = parts[0]
    if key_type == "ssh-dss":
        raise InvalidSshKey("dsa_not_supported", "DSA keys are not accepted; use ssh-ed25519.")
    if key_type not in ACCEPTED_TYPES:
        if any(word in ACCEPTED_TYPES for word in text.split()[1:]):
            raise InvalidSshKey(
                "options_not_allowed",
                "Options before the key type (as in authorized_keys) are not accepted.",
            )
        raise _unknown_type()
    if len(parts) < 2:
        raise InvalidSshKey("malformed_key", "The key's base64 is missing after its type.")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSshKey("malformed_base64", "The key's base64 is not valid.") from None
    try:
        key = serialization.load_ssh_public_key(f"{key_type} {parts[1]}".encode())
    except UnsupportedAlgorithm:
        raise _unknown_type() from None
    except ValueError:
        raise InvalidSshKey("malformed_key", f"This is not a valid {key_type} key.") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidSshKey(
            "rsa_key_too_short",
            f"This RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required.",
        )
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise _unknown_type()
    canonical = key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    canonical_type, canonical_blob = canonical.split(" ", 1)
    if canonical_type != key_type or base64.b64decode(canonical_blob) != blob:
        # Trailing bytes, or a blob of another type than its label.
        raise InvalidSshKey("malformed_key", f"This is not a valid {key_type} key.")
    comment = parts[2].strip() if len(parts) > 2 else None
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise InvalidSshKey(
            "comment_too_long", f"The key's comment is at most {MAX_COMMENT_CHARS} characters."
        )
    return PublicKey(
        key_type=key_type,
        public_key=canonical,
        comment=comment or None,
        fingerprint=fingerprint(blob),
    )


async def add_key(db: AsyncSession, *, user_id: uuid.UUID, name: str, text: str) -> SshKey:
    """Add a key to the account: 422 if it is not one the platform accepts, 409
    `ssh_key_exists` if the account has it already, 409 `too_many_ssh_keys` past the limit."""
    parsed = parse_public_key(text)
    # The account's row, locked: two adds at once cannot both pass the limit.
    await db.execute(select(User.id).where(User.id == user_id).with_for_update())
    count = await db.scalar(select(func.count()).where(SshKey.user_id == user_id))
    if (count or 0) >= MAX_KEYS_PER_ACCOUNT:
        raise TooManySshKeys(f"An account has at most {MAX_KEYS_PER_ACCOUNT} SSH keys.")
    added = await db.scalar(
        insert(SshKey)
        .values(
            id=uuid.uuid4(),
            user_id=user_id,
            name=name,
            key_type=parsed.key_type,
            public_key=parsed.public_key,
            comment=parsed.comment,
            fingerprint=parsed.fingerprint,
        )
        .on_conflict_do_nothing(constraint="uq_ssh_keys_user_id_fingerprint")
        .returning(SshKey.id)
    )
    if added is None:
        raise SshKeyExists(f"This account already has the key {parsed.fingerprint}.")
    key = await db.get(SshKey, added)
    assert key is not None
    return key


async def list_keys(db: AsyncSession, *, user_id: uuid.UUID) -> list[SshKey]:
    """The account's keys, oldest first."""
    return list(
        await db.scalars(
            select(SshKey).where(SshKey.user_id == user_id).order_by(SshKey.created_at, SshKey.id)
        )
    )


async def delete_key(db: AsyncSession, *, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Delete one of the account's keys (machines launched with it keep it)."""
    key = await db.scalar(select(SshKey).where(SshKey.id == key_id, SshKey.user_id == user_id))
    if key is None:
        raise NotFound("No such SSH key.")
    await db.delete(key)


async def kept_keys(
    db: AsyncSession, *, user_id: uuid.UUID, key_ids: list[uuid.UUID]
) -> list[SshKey]:
    """Those of the keys chosen earlier (for an order line) that the account still has, in the
    order chosen."""
    found = {
        key.id: key
        for key in await db.scalars(
            select(SshKey).where(SshKey.user_id == user_id, SshKey.id.in_(key_ids))
        )
    }
    return [found[key_id] for key_id in key_ids if key_id in found]


async def chosen_keys(
    db: AsyncSession, *, user_id: uuid.UUID, key_ids: list[uuid.UUID] | None
) -> list[SshKey]:
    """The keys a launch or an order line asks for: those ids (each the account's own, 422
    `unknown_ssh_key` otherwise), or all the account's keys when none are named."""
    if key_ids is None:
        return await list_keys(db, user_id=user_id)
    wanted = list(dict.fromkeys(key_ids))
    kept = await kept_keys(db, user_id=user_id, key_ids=wanted)
    found = {key.id for key in kept}
    missing = [str(key_id) for key_id in wanted if key_id not in found]
    if missing:
        raise UnknownSshKeys(
            f"No such SSH key: {', '.join(missing)}.",
            errors=[{"field": "ssh_key_ids", "message": f"unknown: {', '.join(missing)}"}],
        )
    return kept
