"""What the credits tests share: a new user, and a posting or a grant with a key of its own."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.credits.models import EntryKind
from computebill.credits.service import Posted, PostedGrant, grant_credit, post_entry


async def add_user(db: AsyncSession) -> uuid.UUID:
    """A new user, its address verified as a signed-up one would be (flushed, not committed)."""
    user = User(
        email=f"credits-{secrets.token_hex(6)}@example.com",
        password_changed_at=datetime.now(UTC),
        email_verified_at=datetime.now(UTC),
    )
    db.add(user)
    await db.flush()
    return user.id


async def post(
    db: AsyncSession, user_id: uuid.UUID, kind: EntryKind, amount: int, **details: Any
) -> Posted:
    """`post_entry` of `amount` millicents, under a key of its own and at the present moment
    unless `details` (its other arguments) say otherwise."""
    return await post_entry(
        db,
        **{
            "user_id": user_id,
            "kind": kind,
            "amount_millicents": amount,
            "idempotency_key": f"{kind.value}:{uuid.uuid4()}",
            "now": datetime.now(UTC),
            **details,
        },
    )


async def grant(
    db: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    *,
    expires_at: datetime | None,
    now: datetime,
) -> PostedGrant:
    """A grant of `amount` millicents under a key of its own."""
    return await grant_credit(
        db,
        user_id=user_id,
        amount_millicents=amount,
        idempotency_key=f"grant:{uuid.uuid4()}",
        expires_at=expires_at,
        now=now,
    )
