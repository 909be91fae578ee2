"""What the app e-mailed, read from its outbox, and its links followed: how a test verifies an
address (or resets a password) the way a person does, never by writing the column itself."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from computebill.auth.models import AccountToken
from computebill.auth.service import normalize_email
from computebill.auth.tokens import RefreshTokenCrypto
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker
from computebill.mail.models import OutboxEmail

VERIFY_EMAIL = "/verify-email"
PASSWORD_RESET = "/password-reset/confirm"


async def emails_to(settings: Settings, recipient: str) -> list[OutboxEmail]:
    """The e-mails sent to `recipient` (in any spelling of the address), the newest first."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            found = await db.scalars(
                select(OutboxEmail)
                .where(OutboxEmail.recipient == normalize_email(recipient))
                .order_by(OutboxEmail.created_at.desc())
            )
            return list(found)
    finally:
        await engine.dispose()


def token_in(body: str, path: str) -> str | None:
    """The token of the first link to `path` in an e-mail's body."""
    match = re.search(re.escape(path) + r"\?token=([A-Za-z0-9_-]+)", body)
    return match.group(1) if match else None


async def emailed_tokens(settings: Settings, recipient: str, path: str) -> list[str]:
    """The tokens of the links to `path` (VERIFY_EMAIL, PASSWORD_RESET) sent to `recipient`,
    the newest first."""
    found = [token_in(email.body, path) for email in await emails_to(settings, recipient)]
    return [token for token in found if token is not None]


async def emailed_token(settings: Settings, recipient: str, path: str) -> str:
    """The token of the link to `path` sent to `recipient` that still works (tests move a frozen
    clock, so e-mails sent at one instant cannot be told apart by their time)."""
    crypto = RefreshTokenCrypto(settings.required_token_pepper)
    tokens = {
        crypto.digest(token): token for token in await emailed_tokens(settings, recipient, path)
    }
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            live = await db.scalar(
                select(AccountToken.token_hash).where(
                    AccountToken.token_hash.in_(tokens), AccountToken.used_at.is_(None)
                )
            )
    finally:
        await engine.dispose()
    assert live is not None, f"no e-mail to {recipient} has a live link to {path}"
    return tokens[live]


async def verify_address(http: httpx.AsyncClient, settings: Settings, recipient: str) -> None:
    """Follow the verification link sent to `recipient`, as its owner does."""
    token = await emailed_token(settings, recipient, VERIFY_EMAIL)
    answer = await http.post("/api/v1/auth/verify-email", json={"token": token})
    assert answer.status_code == 204, answer.text
