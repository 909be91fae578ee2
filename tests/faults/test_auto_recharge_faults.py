"""Auto-recharge under a fault: the worker SIGKILLed after Stripe charged the card and before
the credit was posted. The charge's credit is posted exactly once afterwards (by the
PaymentIntent's webhook, or by reconciliation sending the same idempotency key again), Stripe
holds one PaymentIntent, and the rule is left with nothing in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from computebill.config import Settings
from computebill.credits.models import CreditEntry, EntryKind
from computebill.credits.service import verify_ledger
from computebill.db import unit_of_work
from computebill.devserver.scratch import database
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import AttemptStatus, AutoRechargeAttempt, AutoRechargeRule
from tests.credits.test_concurrency import lock_waiters
from tests.faults.cluster import Cluster, running_cluster
from tests.support.saved_cards import AMOUNT, account_with_card, enabled_rule, intents_of

pytestmark = pytest.mark.slow

BELOW = 500_000  # $5.00 against a $10.00 threshold


@pytest.fixture
def cluster(fault_settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    recharging = fault_settings.model_copy(
        update={
            "auto_recharge_check_seconds": 1,
            "auto_recharge_reconcile_after_seconds": 5,
        }
    )
    with running_cluster(recharging, tmp_path, apps=1, workers=1, emulator_options=[]) as running:
        yield running


async def _until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.2)


async def test_a_worker_killed_between_the_charge_and_its_credit_credits_once(
    cluster: Cluster,
) -> None:
    gateway = StripeGateway(cluster.settings)
    async with database(cluster.settings) as sessions:
        user_id, customer_id = await account_with_card(
            sessions, gateway, cluster.emulator, "pm_card_visa", balance_millicents=BELOW
        )

        async def intents() -> list[str]:
            return await intents_of(cluster.emulator, customer_id)

        # The account's row held: whatever credits it (the charge's step C, the webhook) waits.
        async with sessions() as holder:
            await holder.execute(
                text("SELECT 1 FROM credit_accounts WHERE user_id = :u FOR UPDATE"), {"u": user_id}
            )
            async with unit_of_work(sessions) as db:
                db.add(enabled_rule(user_id))

            async def charged_and_waiting() -> bool:
                return bool(await intents()) and await lock_waiters(sessions) > 0

            await _until(charged_and_waiting, "the card charged and its credit waiting")
            cluster.kill_worker(0)
            await holder.rollback()

        async def credited() -> bool:
            async with sessions() as db:
                return bool(
                    await db.scalar(
                        select(CreditEntry.id).where(
                            CreditEntry.user_id == user_id, CreditEntry.kind == EntryKind.TOP_UP
                        )
                    )
                )

        assert not await credited()
        cluster.start_worker(0)
        await cluster.beating(0, after=datetime.now(UTC))
        await _until(credited, "the charge credited after the kill")
        await asyncio.sleep(3)  # a check, an event sweep and more after it: nothing more

        (intent,) = await intents()
        async with sessions() as db:
            entries = (
                await db.execute(
                    select(CreditEntry.amount_millicents, CreditEntry.idempotency_key).where(
                        CreditEntry.user_id == user_id, CreditEntry.kind == EntryKind.TOP_UP
                    )
                )
            ).all()
            attempts = list(
                await db.scalars(
                    select(AutoRechargeAttempt).where(AutoRechargeAttempt.user_id == user_id)
                )
            )
            rule = await db.get(AutoRechargeRule, user_id)
            assert await verify_ledger(db) == []
        assert [tuple(row) for row in entries] == [(AMOUNT * 1000, f"top_up:{intent}")]
        assert [(a.status, a.payment_intent_id) for a in attempts] == [
            (AttemptStatus.SUCCEEDED, intent)
        ]
        assert rule is not None
        assert (rule.crossings, rule.in_flight_top_up_id) == (1, None)
        cluster.assert_alive()
