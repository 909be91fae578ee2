"""Password policy and bcrypt hashing (in a worker thread, so the event loop never blocks)."""

from __future__ import annotations

import asyncio
from functools import cache
from importlib.resources import files

import bcrypt

MIN_LENGTH = 10
MAX_BYTES = 72  # bcrypt ignores everything past 72 bytes; we refuse rather than truncate


class PasswordPolicyError(ValueError):
    pass


@cache
def _common_passwords() -> frozenset[str]:
    text = files("computebill.auth").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def check_password_policy(password: str, *, email: str) -> None:
    """Raise PasswordPolicyError with a message for the user when the password is unacceptable."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"must be at least {MIN_LENGTH} characters long")
    if len(password.encode("utf-8")) > MAX_BYTES:
        raise PasswordPolicyError(f"must be at most {MAX_BYTES} bytes in UTF-8")
    if password.lower() in _common_passwords():
        raise PasswordPolicyError("is one of the most common passwords; choose another")
    if password.strip().lower() == email.strip().lower():
        raise PasswordPolicyError("must not be the same as the e-mail address")


async def hash_password(password: str, *, rounds: int) -> bytes:
    return await asyncio.to_thread(bcrypt.hashpw, password.encode("utf-8"), bcrypt.gensalt(rounds))


async def verify_password(password: str, password_hash: bytes) -> bool:
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_BYTES:
        return False  # never a prefix match
    return await asyncio.to_thread(bcrypt.checkpw, encoded, password_hash)


@cache
def dummy_hash(rounds: int) -> bytes:
    """A hash to check against when the account does not exist, so both cases take as long."""
    return bcrypt.hashpw(b"no such account; same cost as a real one", bcrypt.gensalt(rounds))
