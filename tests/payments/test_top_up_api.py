"""`POST /api/v1/credits/top-ups` and the page Stripe returns to: the amount within the
configured bounds, the Idempotency-Key, and the success page reading local state until the
credit is added."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from computebill.config import Settings
from computebill.credits.models import CreditTopUp, TopUpStatus
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import database
from computebill.payments.gateway import StripeGateway
from computebill.state import app_state
from tests.payments.test_checkout_pages import local
from tests.support.http import Api, api_for
from tests.support.pages import PASSWORD, Browser
from tests.support.shopper import pay
from tests.support.stripe import EmulatorProcess, with_stripe

TOP_UPS = "/api/v1/credits/top-ups"
STATUS = re.compile(r'data-top-up-status="([a-z_]+)"')


@pytest.fixture
async def stripe_api(settings: Settings, checkout_emulator: EmulatorProcess) -> AsyncIterator[Api]:
    """The app in this process, its Stripe the emulator (no webhooks reach it)."""
    async for value in api_for(
        with_stripe(settings, api_base=checkout_emulator.base_url, webhook_secret=None)
    ):
        yield value


async def _top_up(api: Api, token: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    if key is not None:
        headers["idempotency-key"] = key
    return await api.http.post(TOP_UPS, json=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount_cents": 999}, "top_up_amount_out_of_range"),
        ({"amount_cents": 500_001}, "top_up_amount_out_of_range"),
        ({"amount_cents": 0}, "top_up_amount_out_of_range"),
        ({"amount_cents": -2500}, "top_up_amount_out_of_range"),
        ({"amount_cents": "2500"}, "validation_error"),
        ({"amount_cents": 2500.5}, "validation_error"),
        ({"amount_cents": 2500.0}, "validation_error"),
        ({"amount_cents": None}, "validation_error"),
        ({}, "validation_error"),
        ({"amount_cents": 2500, "price": 1}, "validation_error"),
        ([2500], "validation_error"),
    ],
)
async def test_an_amount_outside_the_bounds_or_not_whole_cents_is_a_422(
    stripe_api: Api, email: str, body: Any, code: str
) -> None:
    token = (await stripe_api.sign_up(email))["access_token"]
    answer = await _top_up(stripe_api, token, body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code
    assert "amount_cents" in str(answer.json()["errors"]) or code == "validation_error"


async def test_the_bounds_themselves_are_accepted_and_come_from_the_settings(
    stripe_api: Api, email: str
) -> None:
    token = (await stripe_api.sign_up(email))["access_token"]
    for amount in (1000, 500_000):
        answer = await _top_up(stripe_api, token, {"amount_cents": amount})
        assert answer.status_code == 201, answer.text
        assert set(answer.json()) == {"top_up_id", "checkout_url"}

    state = app_state(stripe_api.app)
    state.settings = state.settings.model_copy(
        update={"top_up_min_cents": 5000, "top_up_max_cents": 6000}
    )
    low = await _top_up(stripe_api, token, {"amount_cents": 4999})
    assert low.status_code == 422, low.text
    assert "between 5000 and 6000" in low.json()["detail"]
    assert (await _top_up(stripe_api, token, {"amount_cents": 5000})).status_code == 201


async def test_the_same_idempotency_key_answers_the_same_top_up(
    stripe_api: Api, email: str
) -> None:
    token = (await stripe_api.sign_up(email))["access_token"]
    answers = await asyncio.gather(
        *(_top_up(stripe_api, token, {"amount_cents": 2500}, key="top-up-1") for _ in range(4))
    )
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({(a.json()["top_up_id"], a.json()["checkout_url"]) for a in answers}) == 1
    again = await _top_up(stripe_api, token, {"amount_cents": 2500}, key="top-up-1")
    assert again.json() == answers[0].json()

    other_amount = await _top_up(stripe_api, token, {"amount_cents": 3000}, key="top-up-1")
    assert other_amount.status_code == 409, other_amount.text
    assert other_amount.json()["code"] == "conflict"

    # Without a key, each request is a top-up of its own.
    first = await _top_up(stripe_api, token, {"amount_cents": 2500})
    second = await _top_up(stripe_api, token, {"amount_cents": 2500})
    assert first.json()["top_up_id"] != second.json()["top_up_id"]
    assert first.json()["top_up_id"] != answers[0].json()["top_up_id"]


async def test_a_top_up_needs_a_user_and_payments(api: Api, email: str) -> None:
    anonymous = await api.http.post(TOP_UPS, json={"amount_cents": 2500})
    assert anonymous.status_code == 401
    token = (await api.sign_up(email))["access_token"]
    off = await _top_up(api, token, {"amount_cents": 2500})  # no Stripe key configured
    assert off.status_code == 503, off.text
    assert off.json()["code"] == "payments_unavailable"
    assert off.headers["retry-after"]


async def test_stripe_away_keeps_the_top_up_for_a_retry_that_opens_its_session(
    settings: Settings, checkout_emulator: EmulatorProcess, email: str
) -> None:
    away = with_stripe(settings, api_base=f"http://127.0.0.1:{free_port()}", webhook_secret=None)
    async for api in api_for(away):
        token = (await api.sign_up(email))["access_token"]
        down = await _top_up(api, token, {"amount_cents": 2500}, key="while-away")
        assert down.status_code == 502, down.text
        assert down.json()["code"] == "payment_provider_unavailable"
        assert down.headers["retry-after"]

        # Stripe is back: the retry with the same key opens the session of the same top-up.
        state = app_state(api.app)
        state.gateway = StripeGateway(
            with_stripe(settings, api_base=checkout_emulator.base_url, webhook_secret=None)
        )
        back = await _top_up(api, token, {"amount_cents": 2500}, key="while-away")
        assert back.status_code == 201, back.text
        async with database(settings) as sessions, sessions() as db:
            rows = list(
                await db.scalars(
                    select(CreditTopUp).where(CreditTopUp.idempotency_key == "while-away")
                )
            )
        mine = [row for row in rows if str(row.id) == back.json()["top_up_id"]]
        assert len(mine) == 1
        assert mine[0].status is TopUpStatus.PENDING
        assert mine[0].checkout_session_id is not None
        assert mine[0].checkout_session_id in back.json()["checkout_url"]


def _status(page: str) -> str:
    match = STATUS.search(page)
    assert match, "no top-up status in the page"
    return match.group(1)


async def test_the_success_page_confirms_then_shows_the_credit_added(
    shop_browser: Browser, other_browser: Browser, email: str
) -> None:
    await shop_browser.sign_up(email)
    login = await shop_browser.http.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    token = login.json()["access_token"]
    headers = {"authorization": f"Bearer {token}"}
    created = await shop_browser.http.post(TOP_UPS, json={"amount_cents": 2500}, headers=headers)
    assert created.status_code == 201, created.text
    checkout_url, top_up_id = created.json()["checkout_url"], created.json()["top_up_id"]
    session_id = checkout_url.rstrip("/").rsplit("/", 1)[-1]
    success = f"/credits/top-ups/success?session_id={session_id}"

    before = await shop_browser.page(success)  # Stripe is asked: not paid yet
    assert before.status_code == 200, before.text
    assert _status(before.text) == "pending"
    assert "Confirming payment…" in before.text
    assert 'hx-get="/credits/top-ups/success/status' in before.text

    paid = await pay(checkout_url)
    assert paid.status_code == 303
    assert local(paid.headers["location"]) == success

    # Within 10 s of asking, the page reads only what is stored: still confirming.
    status = await shop_browser.page(f"/credits/top-ups/success/status?session_id={session_id}")
    assert _status(status.text) == "pending"
    settings = app_state(shop_browser.app).settings
    assert settings.redis_url is not None
    store = aioredis.Redis.from_url(settings.redis_url)
    try:
        await store.delete(f"{settings.redis_namespace}:top-up-confirm:{top_up_id}")
    finally:
        await store.aclose()

    after = await shop_browser.page(success)  # asks Stripe again: paid, and credited
    assert _status(after.text) == "paid"
    assert "Credit added: $25.00" in after.text
    assert 'hx-trigger="every 2s"' not in after.text
    credits = await shop_browser.http.get("/api/v1/credits", headers=headers)
    assert credits.json()["balance_cents"] == 2500
    assert _status((await shop_browser.page(success)).text) == "paid"  # a reload adds nothing
    assert (await shop_browser.http.get("/api/v1/credits", headers=headers)).json()[
        "balance_cents"
    ] == 2500

    await other_browser.sign_up(f"other-{email}")
    assert (await other_browser.page(success)).status_code == 404  # someone else's top-up

    canceled = await shop_browser.page("/credits/top-ups/canceled")
    assert canceled.status_code == 200
    assert "Nothing was charged." in canceled.text
