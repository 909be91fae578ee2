"""What the account-token tests share: the stored link tokens and audit events of an account,
read from the test database."""

from __future__ import annotations

from sqlalchemy import select, text

from computebill.auth.models import AccountToken, AuthEvent, User
from computebill.auth.service import normalize_email
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker


async def account_rows(
    settings: Settings, email: str
) -> tuple[User, list[AccountToken], list[str]]:
    """The account with this address, its link tokens (oldest first) and its audit events'
    types (in order)."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            user = await db.scalar(select(User).where(User.email == normalize_email(email)))
            assert user is not None, email
            tokens = await db.scalars(
                select(AccountToken)
                .where(AccountToken.user_id == user.id)
                .order_by(AccountToken.created_at, AccountToken.expires_at)
            )
            events = await db.scalars(
                select(AuthEvent.type).where(AuthEvent.user_id == user.id).order_by(AuthEvent.id)
            )
            return user, list(tokens), list(events)
    finally:
        await engine.dispose()


async def tokens_table_mentions(settings: Settings, needles: list[str]) -> list[str]:
    """Those of `needles` found anywhere in the account_tokens table, every column as text
    (bytes as hex)."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            rows = await connection.scalars(text("SELECT t::text FROM account_tokens t"))
            table = "\n".join(rows)
    finally:
        await engine.dispose()
    return [needle for needle in needles if needle in table]
