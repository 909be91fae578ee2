"""Saved cards and the auto-recharge rule through the JSON API, with the Stripe emulator: a card
saved on Stripe's page in setup mode or by a top-up paid with `save_card`, listed, made the
Customer's default, removed (which pauses the rule), and the rule's validation."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from computebill.auth.models import User
from computebill.config import Settings
from computebill.devserver.scratch import Sessions
from computebill.jobs import JobName, take_requested_jobs
from computebill.payments import jobs, recharge
from computebill.payments.gateway import StripeGateway
from tests.payments.top_ups import deliver, emulator_event
from tests.recharge.accounts import customer_with_card
from tests.support.http import Api
from tests.support.jobs import job_context
from tests.support.mailbox import verify_address
from tests.support.pages import PASSWORD, Browser
from tests.support.shopper import pay
from tests.support.state_machines import JobPool
from tests.support.stripe import EmulatorProcess, with_stripe

CARDS = "/api/v1/payment-methods"
RULE = "/api/v1/credits/auto-recharge"
ON = {"enabled": True, "threshold_cents": 1000, "amount_cents": 2500}


async def _signed_up(api: Api, email: str) -> tuple[str, str]:
    """A new customer's access token and user id."""
    answer = await api.sign_up(email)
    return answer["access_token"], answer["user"]["id"]


async def _run_requested(
    sessions: Sessions,
    settings: Settings,
    emulator: EmulatorProcess,
    gateway: StripeGateway,
    event: dict[str, Any],
) -> str:
    """Process a Stripe event as the worker does, then run the card-saving job it asked for."""
    async with sessions() as db:
        outcome = await deliver(db, gateway, event)
        await db.commit()
        requested = take_requested_jobs(db)
    context = job_context(
        with_stripe(settings, api_base=emulator.base_url, webhook_secret=None), sessions, JobPool()
    )
    for job in requested:
        if job.name is JobName.SAVE_SETUP_CARD:
            await jobs.save_setup_card(context, *(str(a) for a in job.args))
        elif job.name is JobName.SAVE_PAYMENT_METHOD:
            await jobs.save_payment_method(context, *(str(a) for a in job.args))
    return outcome


@dataclass(frozen=True)
class Flow:
    """The app with the emulator as its Stripe, and what runs the worker's part by hand."""

    api: Api
    sessions: Sessions
    settings: Settings
    emulator: EmulatorProcess
    gateway: StripeGateway

    async def run(self, event: dict[str, Any]) -> str:
        return await _run_requested(
            self.sessions, self.settings, self.emulator, self.gateway, event
        )

    async def save_card(self, token: str) -> dict[str, Any]:
        return await _save_card_on_page(self, token)

    async def completed(self, opened: httpx.Response) -> dict[str, Any]:
        """Stripe's page (whose session `opened` answered) paid with 4242, and the session's
        `checkout.session.completed` event."""
        assert opened.status_code == 201, opened.text
        url = opened.json()["checkout_url"]
        assert (await pay(url)).status_code == 303
        session_id = url.rsplit("/", 1)[-1]
        return emulator_event(
            self.emulator, "checkout.session.completed", lambda obj: obj["id"] == session_id
        )


@pytest.fixture
def flow(
    stripe_api: Api,
    sessions: Sessions,
    settings: Settings,
    checkout_emulator: EmulatorProcess,
    gateway: StripeGateway,
) -> Flow:
    return Flow(stripe_api, sessions, settings, checkout_emulator, gateway)


async def _save_card_on_page(flow: Flow, token: str) -> dict[str, Any]:
    """The setup flow: Stripe's page in setup mode, then its completion event: the saved card."""
    event = await flow.completed(await flow.api.call("POST", f"{CARDS}/setup", token))
    assert event["data"]["object"]["mode"] == "setup"
    assert await flow.run(event) == ("card setup completed: saving the card")
    listed = (await flow.api.get(CARDS, token)).json()["payment_methods"]
    return dict(listed[0])


async def test_a_card_saved_in_setup_mode_is_listed_and_the_customers_default(
    flow: Flow, email: str
) -> None:
    stripe_api, checkout_emulator = flow.api, flow.emulator
    token, _ = await _signed_up(stripe_api, email)
    assert (await stripe_api.get(CARDS, token)).json() == {"payment_methods": []}

    card = await flow.save_card(token)

    assert (card["brand"], card["last4"], card["is_default"]) == ("visa", "4242", True)
    method = await asyncio.to_thread(
        checkout_emulator.client().v1.payment_methods.retrieve, card["stripe_payment_method_id"]
    )
    customer_id = method.to_dict()["customer"]
    customer = await asyncio.to_thread(
        checkout_emulator.client().v1.customers.retrieve, customer_id
    )
    assert (
        customer.to_dict()["invoice_settings"]["default_payment_method"]
        == card["stripe_payment_method_id"]
    )
    # The SetupIntent's own event saves the same card again: still one.
    event = emulator_event(
        checkout_emulator,
        "setup_intent.succeeded",
        lambda obj: obj.get("payment_method") == card["stripe_payment_method_id"],
    )
    assert await flow.run(event) == ("card set up: saving it")
    assert len((await stripe_api.get(CARDS, token)).json()["payment_methods"]) == 1


async def test_a_top_up_paid_with_save_card_keeps_the_card(flow: Flow, email: str) -> None:
    stripe_api, checkout_emulator = flow.api, flow.emulator
    token, _ = await _signed_up(stripe_api, email)
    event = await flow.completed(
        await stripe_api.call(
            "POST", "/api/v1/credits/top-ups", token, {"amount_cents": 2500, "save_card": True}
        )
    )
    intent = await asyncio.to_thread(
        checkout_emulator.client().v1.payment_intents.retrieve,
        str(event["data"]["object"]["payment_intent"]),
    )
    assert intent.to_dict()["setup_future_usage"] == "off_session"

    outcome = await flow.run(event)

    assert outcome == "top-up credited"
    (card,) = (await stripe_api.get(CARDS, token)).json()["payment_methods"]
    assert (card["last4"], card["is_default"]) == ("4242", True)
    assert card["stripe_payment_method_id"] == intent.to_dict()["payment_method"]


async def test_removing_the_last_card_detaches_it_and_pauses_the_rule_until_re_enabled(
    flow: Flow, email: str
) -> None:
    stripe_api, checkout_emulator = flow.api, flow.emulator
    token, _ = await _signed_up(stripe_api, email)
    card = await flow.save_card(token)
    enabled = await stripe_api.call("PUT", RULE, token, ON)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["enabled"] is True
    assert enabled.json()["paused_reason"] is None

    removed = await stripe_api.call("DELETE", f"{CARDS}/{card['id']}", token)

    assert removed.status_code == 204
    assert (await stripe_api.get(CARDS, token)).json() == {"payment_methods": []}
    method = await asyncio.to_thread(
        checkout_emulator.client().v1.payment_methods.retrieve, card["stripe_payment_method_id"]
    )
    assert method.to_dict()["customer"] is None
    rule = (await stripe_api.get(RULE, token)).json()
    assert rule["paused_reason"] is not None
    assert "card" in rule["paused_reason"]
    again = await stripe_api.call("DELETE", f"{CARDS}/{card['id']}", token)
    assert (again.status_code, again.json()["code"]) == (404, "not_found")
    # Enabling with no card is refused; with a new card it resumes.
    refused = await stripe_api.call("PUT", RULE, token, ON)
    assert (refused.status_code, refused.json()["code"]) == (409, "no_saved_card")
    await flow.save_card(token)
    resumed = (await stripe_api.call("PUT", RULE, token, ON)).json()
    assert (resumed["enabled"], resumed["paused_reason"], resumed["consecutive_failures"]) == (
        True,
        None,
        0,
    )


async def test_someone_elses_card_is_not_found(flow: Flow, email: str) -> None:
    stripe_api = flow.api
    owner, _ = await _signed_up(stripe_api, email)
    card = await flow.save_card(owner)
    other, _ = await _signed_up(stripe_api, "other-" + email)

    answer = await stripe_api.call("DELETE", f"{CARDS}/{card['id']}", other)

    assert answer.status_code == 404
    assert len((await stripe_api.get(CARDS, owner)).json()["payment_methods"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**ON, "enabled": False, "amount_cents": 999}, 422, "auto_recharge_amount_out_of_range"),
        (
            {**ON, "enabled": False, "amount_cents": 500_001},
            422,
            "auto_recharge_amount_out_of_range",
        ),
        ({**ON, "enabled": False, "threshold_cents": -1}, 422, "validation_error"),
        ({**ON, "enabled": False, "amount_cents": "2500"}, 422, "validation_error"),
        ({**ON, "enabled": "yes"}, 422, "validation_error"),
        ({**ON, "enabled": False, "monthly_max_cents": 0}, 422, "validation_error"),
        (
            {**ON, "enabled": False, "monthly_max_cents": 2499},
            422,
            "auto_recharge_monthly_max_below_amount",
        ),
        ({**ON, "surprise": 1}, 422, "validation_error"),
        (ON, 409, "no_saved_card"),
    ],
)
async def test_a_rule_that_cannot_be_kept_is_refused_with_its_code(
    api: Api, email: str, body: dict[str, Any], status: int, code: str
) -> None:
    token, _ = await _signed_up(api, email)

    answer: httpx.Response = await api.call("PUT", RULE, token, body)

    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code
    assert (await api.get(RULE, token)).json()["threshold_cents"] is None


async def test_a_rule_is_kept_off_without_a_card_and_shown_as_set(api: Api, email: str) -> None:
    token, _ = await _signed_up(api, email)
    assert (await api.get(RULE, token)).json()["enabled"] is False

    kept = await api.call("PUT", RULE, token, {**ON, "enabled": False, "monthly_max_cents": 10_000})

    assert kept.status_code == 200
    shown = (await api.get(RULE, token)).json()
    assert {k: shown[k] for k in ("enabled", "threshold_cents", "amount_cents")} == {
        "enabled": False,
        "threshold_cents": 1000,
        "amount_cents": 2500,
    }
    assert shown["monthly_max_cents"] == 10_000
    assert shown["attempts"] == []


async def test_turning_auto_recharge_on_needs_a_verified_address(
    api: Api, sessions: Sessions, email: str
) -> None:
    """A rule buys, as checkout and top-ups do (tests/auth/test_purchase_gate.py): turning it on
    or changing it on waits for a verified address (403 `email_unverified`), so does it again
    after the address changes; turning it off never waits."""
    pair = await api.sign_up(email, verify=False)
    token = pair["access_token"]
    await customer_with_card(sessions, user_id=uuid.UUID(pair["user"]["id"]))
    quiet = {**ON, "threshold_cents": 0}  # a zero balance is not below it: no charge is due

    refused = await api.call("PUT", RULE, token, quiet)

    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "email_unverified"
    assert (await api.get(RULE, token)).json()["threshold_cents"] is None
    assert (await api.call("PUT", RULE, token, {**quiet, "enabled": False})).status_code == 200
    await verify_address(api.http, api.settings, email)
    assert (await api.call("PUT", RULE, token, quiet)).json()["enabled"] is True

    moved = await api.call(
        "POST", "/api/v1/me/email", token, {"new_email": "moved-" + email, "password": PASSWORD}
    )
    assert moved.status_code == 200
    changed = await api.call("PUT", RULE, token, {**quiet, "amount_cents": 5000})
    assert (changed.status_code, changed.json()["code"]) == (403, "email_unverified")
    assert (await api.get(RULE, token)).json()["amount_cents"] == ON["amount_cents"]
    off = await api.call("PUT", RULE, token, {**quiet, "enabled": False})
    assert (off.status_code, off.json()["enabled"]) == (200, False)


async def test_the_billing_form_says_why_until_the_address_is_verified(
    browser: Browser, sessions: Sessions, email: str
) -> None:
    await browser.sign_up(email, verify=False)
    async with sessions() as db:
        user_id = await db.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    await customer_with_card(sessions, user_id=user_id)
    form = {"enabled": "true", "threshold": "0", "amount": "25"}

    refused = await browser.submit("/billing/auto-recharge", form, form_page="/billing")

    assert refused.status_code == 403
    assert "Verify your e-mail address before buying" in refused.text
    async with sessions() as db:
        assert await recharge.rule_of(db, user_id) is None
    await browser.verify_email(email)
    saved = await browser.submit("/billing/auto-recharge", form, form_page="/billing")
    assert saved.status_code == 303
