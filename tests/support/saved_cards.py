"""An account with a card saved at the Stripe emulator, as the setup flow leaves it, for the
auto-recharge tests of more than one folder."""

from __future__ import annotations

import asyncio
import uuid

from computebill.credits.models import EntryKind
from computebill.db import unit_of_work
from computebill.devserver.scratch import Sessions
from computebill.payments import cards, checkout
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import AutoRechargeRule, PaymentMethod
from tests.credits.ledger import add_user, post
from tests.support.stripe import EmulatorProcess

THRESHOLD = 1000  # $10.00
AMOUNT = 2500  # $25.00


async def account_with_card(
    sessions: Sessions,
    gateway: StripeGateway,
    emulator: EmulatorProcess,
    token: str,
    *,
    balance_millicents: int,
) -> tuple[uuid.UUID, str]:
    """A new user with `balance_millicents` (one adjustment) whose Stripe Customer has the test
    card `token` attached, saved by `cards.save_card` (as the setup's job does) and so its
    default: the user's id and the Customer's."""
    async with unit_of_work(sessions) as db:
        user_id = await add_user(db)
        await post(db, user_id, EntryKind.ADJUSTMENT, balance_millicents, reason="test")
        customer_id = await checkout._customer_for(db, gateway, user_id)
    await save_test_card(sessions, gateway, emulator, customer_id, token)
    return user_id, customer_id


async def save_test_card(
    sessions: Sessions,
    gateway: StripeGateway,
    emulator: EmulatorProcess,
    customer_id: str,
    token: str,
) -> PaymentMethod:
    """The test card `token` attached to the Customer at the emulator and saved by
    `cards.save_card` (as the setup's job does), so the Customer's default: its stored row."""
    method = await asyncio.to_thread(
        emulator.client().v1.payment_methods.attach, token, params={"customer": customer_id}
    )
    async with unit_of_work(sessions) as db:
        saved = await cards.save_card(
            db, gateway, customer_id=customer_id, payment_method_id=str(method.id)
        )
    assert saved is not None
    return saved


def enabled_rule(user_id: uuid.UUID, *, monthly_max_cents: int | None = None) -> AutoRechargeRule:
    """An enabled, armed rule: below $10.00, add $25.00."""
    return AutoRechargeRule(
        user_id=user_id,
        enabled=True,
        threshold_cents=THRESHOLD,
        amount_cents=AMOUNT,
        monthly_max_cents=monthly_max_cents,
        armed=True,
        crossings=0,
        consecutive_failures=0,
    )


async def intents_of(emulator: EmulatorProcess, customer_id: str) -> list[str]:
    """The PaymentIntents the emulator holds for the Customer, newest first."""
    listed = await asyncio.to_thread(
        emulator.client().v1.payment_intents.list, params={"customer": customer_id}
    )
    return [str(intent.id) for intent in listed.data]
