"""Auto-recharge as it runs: the app and a worker as processes, the emulator delivering the
PaymentIntent's webhook before the charge's own answer returns, or after it. Either way the
worker's check charges the saved card once and the balance rises by exactly the amount, once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from computebill.config import Settings
from computebill.credits.models import CreditEntry, EntryKind
from computebill.db import unit_of_work
from computebill.devserver.scratch import database
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import (
    AttemptStatus,
    AutoRechargeAttempt,
    AutoRechargeRule,
    StripeEvent,
)
from tests.support.database import own_database
from tests.support.platform import running_platform
from tests.support.saved_cards import AMOUNT, account_with_card, enabled_rule, intents_of

pytestmark = pytest.mark.slow

BELOW = 500_000  # $5.00 against a $10.00 threshold


@pytest.mark.parametrize("timing", ["before_response", "after_response"])
async def test_the_webhook_before_or_after_the_answer_credits_the_charge_once(
    settings: Settings, service_urls: tuple[str, str], tmp_path: Path, timing: str
) -> None:
    async with own_database(settings, service_urls[0]) as own:
        with running_platform(
            own, tmp_path, "--webhook-timing", timing, auto_recharge_check_seconds=1
        ) as platform:
            gateway = StripeGateway(platform.app_settings)
            async with database(own) as sessions:
                user_id, customer_id = await account_with_card(
                    sessions, gateway, platform.emulator, "pm_card_visa", balance_millicents=BELOW
                )
                async with unit_of_work(sessions) as db:
                    db.add(enabled_rule(user_id))

                async def top_ups() -> list[tuple[int, str]]:
                    async with sessions() as db:
                        rows = await db.execute(
                            select(
                                CreditEntry.amount_millicents, CreditEntry.idempotency_key
                            ).where(
                                CreditEntry.user_id == user_id,
                                CreditEntry.kind == EntryKind.TOP_UP,
                            )
                        )
                        return [(amount, key) for amount, key in rows]

                async def event_outcome() -> str | None:
                    async with sessions() as db:
                        return await db.scalar(
                            select(StripeEvent.outcome).where(
                                StripeEvent.type == "payment_intent.succeeded"
                            )
                        )

                deadline = time.monotonic() + 60
                while not (await top_ups() and await event_outcome()):
                    assert time.monotonic() < deadline, platform.log.read_text()[-3000:]
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2)  # more checks and the event sweep: nothing more

                (intent,) = await intents_of(platform.emulator, customer_id)
                assert await top_ups() == [(AMOUNT * 1000, f"top_up:{intent}")]
                assert await event_outcome() in (
                    "auto-recharge credited",
                    "attempt already succeeded",
                )
                async with sessions() as db:
                    attempts = list(await db.scalars(select(AutoRechargeAttempt)))
                    rule = await db.get(AutoRechargeRule, user_id)
                assert [(a.status, a.payment_intent_id) for a in attempts] == [
                    (AttemptStatus.SUCCEEDED, intent)
                ]
                assert rule is not None
                # Back above the threshold: re-armed, with nothing in flight.
                assert (rule.in_flight_top_up_id, rule.crossings, rule.armed) == (None, 1, True)
