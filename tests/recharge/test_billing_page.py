"""The billing page's saved cards and auto-recharge: the cards with Remove and Add a card, the
"Save this card" box on the top-up form, the rule's form (saved from the page), every charge
with its outcome, the pause, and the runway told "with auto-recharge" on the page and by
`GET /api/v1/credits`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.credits.models import CreditTopUp
from computebill.db import create_sessionmaker
from computebill.devserver.scratch import Sessions
from computebill.payments import recharge
from computebill.payments.gateway import ChargeOutcome, OffSessionCharge, StripeGateway
from computebill.payments.models import AutoRechargeRule, StripeCustomer
from tests.billing.test_billing_pages import signed_up
from tests.recharge.accounts import customer_with_card, with_rule
from tests.support.http import Api
from tests.support.markup import elements, the
from tests.support.pages import Browser
from tests.support.saved_cards import save_test_card
from tests.support.stripe import EmulatorProcess, payment_terms


async def test_a_customer_without_a_card_is_offered_one_and_the_save_box(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    await signed_up(browser, email, engine)

    page = (await browser.page("/billing")).text

    assert the(page, "data-no-cards").text == "No saved card. Auto-recharge needs one."
    assert elements(page, "data-save-card")
    assert "Add a card" in the(page, "data-cards").text
    assert "With auto-recharge" not in the(page, "data-runway").text


async def test_the_page_shows_the_card_the_rule_its_charges_and_the_runway_with_it(
    browser: Browser, email: str, engine: AsyncEngine, sessions: Sessions
) -> None:
    user_id = await signed_up(browser, email, engine)
    await customer_with_card(sessions, user_id=user_id)
    await with_rule(sessions, user_id, balance_millicents=500_000)
    async with sessions() as db:
        planned = await recharge.begin_charge(db, user_id, now=datetime.now(UTC))
        await db.commit()
    assert planned is not None
    async with sessions() as db:
        await recharge.settle_planned(
            db,
            planned,
            OffSessionCharge(
                outcome=ChargeOutcome.FAILED,
                payment_intent_id=None,
                failure_code="card_declined",
                failure_message="Your card has insufficient funds.",
            ),
            terms=payment_terms((60,)),
            now=datetime.now(UTC),
        )
        await db.commit()

    page = (await browser.page("/billing")).text

    (card,) = elements(page, "data-card")
    assert "•••• 4242" in card.text
    assert "Default" in card.text
    assert "Remove" in card.text
    (attempt,) = elements(page, "data-attempt")
    assert attempt.attrs["data-attempt-status"] == "failed"
    assert "Failed: Your card has insufficient funds." in attempt.text
    assert (
        "With auto-recharge: $25.00 is added when it falls below $10.00."
        in the(page, "data-runway").text
    )
    # Paused, it no longer counts on the runway, and the page says why.
    async with sessions() as db:
        await db.execute(
            update(AutoRechargeRule)
            .where(AutoRechargeRule.user_id == user_id)
            .values(paused_reason="Paused for the test.")
        )
        await db.commit()
    paused = (await browser.page("/billing")).text
    assert the(paused, "data-paused").text == "Paused: Paused for the test."
    assert "With auto-recharge" not in the(paused, "data-runway").text


async def test_the_rule_is_saved_from_the_page(
    browser: Browser, email: str, engine: AsyncEngine, sessions: Sessions
) -> None:
    user_id = await signed_up(browser, email, engine)
    await customer_with_card(sessions, user_id=user_id)

    answer = await browser.submit(
        "/billing/auto-recharge",
        {"enabled": "true", "threshold": "20", "amount": "50.00", "monthly_max": "200"},
        form_page="/billing",
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "/billing#auto-recharge"
    async with sessions() as db:
        rule = await recharge.rule_of(db, user_id)
    assert rule is not None
    assert (rule.enabled, rule.threshold_cents, rule.amount_cents, rule.monthly_max_cents) == (
        True,
        2000,
        5000,
        20000,
    )
    refused = await browser.submit(
        "/billing/auto-recharge", {"threshold": "ten", "amount": "50"}, form_page="/billing"
    )
    assert refused.status_code == 422
    assert "Enter the threshold in dollars" in refused.text


async def test_the_credits_api_says_the_runway_is_with_auto_recharge(
    api: Api, email: str, sessions: Sessions
) -> None:
    answer = await api.sign_up(email)
    token = answer["access_token"]
    assert (await api.get("/api/v1/credits", token)).json()["auto_recharge"] is None
    user_id = uuid.UUID(answer["user"]["id"])
    await customer_with_card(sessions, user_id=user_id)
    await with_rule(sessions, user_id, balance_millicents=0)

    credits = (await api.get("/api/v1/credits", token)).json()

    assert credits["auto_recharge"] == {
        "enabled": True,
        "threshold_cents": 1000,
        "amount_cents": 2500,
        "paused_reason": None,
    }


async def test_add_a_card_goes_to_stripes_setup_page_and_remove_detaches_it(
    shop_browser: Browser,
    email: str,
    engine: AsyncEngine,
    sessions: Sessions,
    checkout_emulator: EmulatorProcess,
    gateway: StripeGateway,
) -> None:
    user_id = await signed_up(shop_browser, email, engine)

    opened = await shop_browser.submit("/billing/payment-methods/setup", form_page="/billing")

    assert opened.status_code == 303
    location = opened.headers["location"]
    assert location.startswith(f"{checkout_emulator.base_url}/c/pay/")
    session = await asyncio.to_thread(
        checkout_emulator.client().v1.checkout.sessions.retrieve, location.rsplit("/", 1)[-1]
    )
    assert session.to_dict()["mode"] == "setup"
    # A card saved (as the setup's job does), then removed from the page.
    async with sessions() as db:
        customer_id = await db.scalar(
            select(StripeCustomer.customer_id).where(StripeCustomer.user_id == user_id)
        )
    assert customer_id is not None
    saved = await save_test_card(sessions, gateway, checkout_emulator, customer_id, "pm_card_visa")

    removed = await shop_browser.submit(
        f"/billing/payment-methods/{saved.id}/remove", form_page="/billing"
    )

    assert removed.status_code == 303
    assert removed.headers["location"] == "/billing#cards"
    assert elements((await shop_browser.page("/billing")).text, "data-card") == []
    detached = await asyncio.to_thread(
        checkout_emulator.client().v1.payment_methods.retrieve, saved.stripe_payment_method_id
    )
    assert detached.to_dict()["customer"] is None


async def test_save_this_card_on_the_top_up_form_asks_stripe_to_keep_the_card(
    shop_browser: Browser, email: str, engine: AsyncEngine, checkout_emulator: EmulatorProcess
) -> None:
    await signed_up(shop_browser, email, engine)

    answer = await shop_browser.submit(
        "/billing/top-ups", {"amount": "25.00", "save_card": "true"}, form_page="/billing"
    )

    assert answer.status_code == 303
    session = await asyncio.to_thread(
        checkout_emulator.client().v1.checkout.sessions.retrieve,
        answer.headers["location"].rsplit("/", 1)[-1],
    )
    assert session.to_dict()["amount_total"] == 2500
    async with create_sessionmaker(engine)() as db:
        saving = await db.scalar(
            select(CreditTopUp.save_card).where(CreditTopUp.checkout_session_id == session.id)
        )
    assert saving is True
