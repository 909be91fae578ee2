"""What the auto-recharge tests share: a user with a Stripe Customer, a saved card and a rule,
a balance put where a test wants it, and the rule, attempts and e-mails read back."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from computebill.auth.models import User
from computebill.credits.models import CreditEntry, EntryKind
from computebill.devserver.scratch import Sessions
from computebill.mail.models import OutboxEmail
from computebill.payments.models import (
    AutoRechargeAttempt,
    AutoRechargeRule,
    PaymentMethod,
    StripeCustomer,
)
from tests.credits.ledger import add_user, post
from tests.support.saved_cards import enabled_rule


async def customer_with_card(
    sessions: Sessions,
    *,
    customer_id: str | None = None,
    payment_method_id: str | None = None,
    user_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A user (new unless given) whose Stripe Customer has a default card, stored and
    committed as the setup flow leaves them (the ids are the emulator's when given)."""
    async with sessions() as db:
        if user_id is None:
            user_id = await add_user(db)
        db.add(
            StripeCustomer(
                user_id=user_id, customer_id=customer_id or f"cus_{secrets.token_hex(8)}"
            )
        )
        db.add(
            PaymentMethod(
                user_id=user_id,
                stripe_payment_method_id=payment_method_id or f"pm_{secrets.token_hex(8)}",
                brand="visa",
                last4="4242",
                exp_month=12,
                exp_year=2034,
                is_default=True,
            )
        )
        await db.commit()
    return user_id


async def with_rule(
    sessions: Sessions,
    user_id: uuid.UUID,
    *,
    balance_millicents: int,
    monthly_max_cents: int | None = None,
) -> None:
    """An enabled rule (below $10.00, add $25.00) and the account's balance set to
    `balance_millicents` by one adjustment (none when zero)."""
    async with sessions() as db:
        db.add(enabled_rule(user_id, monthly_max_cents=monthly_max_cents))
        if balance_millicents:
            await post(db, user_id, EntryKind.ADJUSTMENT, balance_millicents, reason="test")
        await db.commit()


async def rule(sessions: Sessions, user_id: uuid.UUID) -> AutoRechargeRule:
    async with sessions() as db:
        found = await db.get(AutoRechargeRule, user_id)
        assert found is not None
        return found


async def attempts(sessions: Sessions, user_id: uuid.UUID) -> list[AutoRechargeAttempt]:
    async with sessions() as db:
        return list(
            await db.scalars(
                select(AutoRechargeAttempt)
                .where(AutoRechargeAttempt.user_id == user_id)
                .order_by(AutoRechargeAttempt.crossing, AutoRechargeAttempt.attempt)
            )
        )


async def top_up_credits(sessions: Sessions, user_id: uuid.UUID) -> list[tuple[int, str]]:
    """The user's `top_up` entries, oldest first: (millicents, key)."""
    async with sessions() as db:
        rows = await db.execute(
            select(CreditEntry.amount_millicents, CreditEntry.idempotency_key)
            .where(CreditEntry.user_id == user_id, CreditEntry.kind == EntryKind.TOP_UP)
            .order_by(CreditEntry.position)
        )
        return [(amount, key) for amount, key in rows]


async def emails_to(sessions: Sessions, user_id: uuid.UUID) -> list[OutboxEmail]:
    """The e-mails sent to the user, oldest first."""
    async with sessions() as db:
        address = await db.scalar(select(User.email).where(User.id == user_id))
        return list(
            await db.scalars(
                select(OutboxEmail)
                .where(OutboxEmail.recipient == address)
                .order_by(OutboxEmail.created_at)
            )
        )


def now() -> datetime:
    return datetime.now(UTC)
