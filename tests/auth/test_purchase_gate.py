"""Buying needs a verified e-mail address: every way to buy (checkout, top-ups, saving a card,
pay-as-you-go launches), through the API and the pages, is refused with 403 `email_unverified`
until the address is verified, then goes through; and changing the address closes the gate
again until the new one is verified."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.config import Settings
from tests.auth.accounts import account_rows
from tests.instances.test_pay_as_you_go_api import fund
from tests.support.http import Api, api_for
from tests.support.mailbox import VERIFY_EMAIL, emailed_token, emails_to, verify_address
from tests.support.pages import PASSWORD, Browser
from tests.support.shopper import H100
from tests.support.stripe import EmulatorProcess, with_stripe

LAUNCH = {"gpu": "nvidia-h100", "gpu_count": 1, "vcpus": 12, "storage_gb": 100}
# Each way to buy through the API, and the status it answers once the address is verified.
BUYING_ROUTES: list[tuple[str, dict[str, Any] | None, int]] = [
    ("/api/v1/checkout", None, 201),
    ("/api/v1/credits/top-ups", {"amount_cents": 2500}, 201),
    ("/api/v1/payment-methods/setup", None, 201),
    ("/api/v1/instances", LAUNCH, 201),
]


@pytest.fixture
async def stripe_api(settings: Settings, checkout_emulator: EmulatorProcess) -> AsyncIterator[Api]:
    """The app in this process, its Stripe the emulator (no webhooks reach it)."""
    async for value in api_for(
        with_stripe(settings, api_base=checkout_emulator.base_url, webhook_secret=None)
    ):
        yield value


async def _ready_to_buy(api: Api, engine: AsyncEngine, pair: dict[str, Any]) -> None:
    """A cart line to check out and credit for a launch's runway."""
    token = pair["access_token"]
    added = await api.call("POST", "/api/v1/cart/items", token, H100)
    assert added.status_code == 201, added.text
    await fund(engine, pair["user"]["id"], 100_000_000)


async def _buy_everything(api: Api, token: str) -> list[httpx.Response]:
    return [await api.call("POST", path, token, body) for path, body, _ in BUYING_ROUTES]


def _refused(answer: httpx.Response) -> bool:
    return (
        answer.status_code == 403
        and answer.headers["content-type"] == "application/problem+json"
        and answer.json()["code"] == "email_unverified"
    )


async def test_every_buying_route_waits_for_a_verified_address(
    stripe_api: Api, engine: AsyncEngine, email: str
) -> None:
    pair = await stripe_api.sign_up(email, verify=False)
    await _ready_to_buy(stripe_api, engine, pair)
    refused = await _buy_everything(stripe_api, pair["access_token"])
    assert all(_refused(answer) for answer in refused), [a.text for a in refused]

    await verify_address(stripe_api.http, stripe_api.settings, email)
    bought = await _buy_everything(stripe_api, pair["access_token"])
    assert [answer.status_code for answer in bought] == [status for *_, status in BUYING_ROUTES], [
        a.text for a in bought
    ]


async def test_changing_the_address_needs_it_verified_again(
    stripe_api: Api, engine: AsyncEngine, email: str
) -> None:
    api = stripe_api
    pair = await api.sign_up(email)
    token = pair["access_token"]
    new_email = "new-" + email

    wrong = await api.call(
        "POST", "/api/v1/me/email", token, {"new_email": new_email, "password": "wrong password!"}
    )
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "wrong_password"
    await api.sign_up("taken-" + email)
    taken = await api.call(
        "POST",
        "/api/v1/me/email",
        token,
        {"new_email": f" TAKEN-{email.upper()}", "password": PASSWORD},
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "email_taken"
    same = await api.call(
        "POST", "/api/v1/me/email", token, {"new_email": email.upper(), "password": PASSWORD}
    )
    assert same.status_code == 422
    assert same.json()["code"] == "email_unchanged"

    changed = await api.call(
        "POST", "/api/v1/me/email", token, {"new_email": new_email.upper(), "password": PASSWORD}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["email"] == new_email
    assert changed.json()["email_verified"] is False
    assert (await api.get("/api/v1/me", token)).json()["email_verified"] is False

    (notice,) = [sent for sent in await emails_to(api.settings, email) if "changed" in sent.subject]
    assert new_email in notice.body
    await _ready_to_buy(api, engine, pair)
    assert all(_refused(answer) for answer in await _buy_everything(api, token))

    await verify_address(api.http, api.settings, new_email)
    assert (await api.get("/api/v1/me", token)).json()["email_verified"] is True
    assert (await api.call("POST", "/api/v1/checkout", token)).status_code == 201
    assert (await api.log_in(new_email)).status_code == 200
    _, _, events = await account_rows(api.settings, new_email)
    assert events.count("email_changed") == 1
    assert events.count("email_verified") == 2


async def test_a_link_sent_to_the_old_address_cannot_verify_the_new_one(
    api: Api, email: str
) -> None:
    pair = await api.sign_up(email, verify=False)
    old_link = await emailed_token(api.settings, email, VERIFY_EMAIL)
    changed = await api.call(
        "POST",
        "/api/v1/me/email",
        pair["access_token"],
        {"new_email": "moved-" + email, "password": PASSWORD},
    )
    assert changed.status_code == 200
    answer = await api.http.post("/api/v1/auth/verify-email", json={"token": old_link})
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_token"


# The pages ---------------------------------------------------------------------------------------

CONFIGURATION = {"gpu": "nvidia-h100", "gpu_count": "1", "vcpus": "12", "storage_gb": "100"}
# Each buying form: (its action, its fields, the page it is on).
BUYING_FORMS: list[tuple[str, dict[str, str], str]] = [
    ("/checkout", {}, "/cart"),
    ("/billing/top-ups", {"amount": "25"}, "/billing"),
    ("/billing/payment-methods/setup", {}, "/billing"),
    ("/instances/pay-as-you-go", CONFIGURATION, "/gpus/nvidia-h100"),
]
MESSAGE = "Verify your e-mail address before buying"


async def test_every_buying_form_shows_why_until_verified(
    shop_browser: Browser, engine: AsyncEngine, email: str
) -> None:
    browser = shop_browser
    await browser.sign_up(email, verify=False)
    added = await browser.submit(
        "/cart/items", {k: str(v) for k, v in H100.items()}, form_page="/gpus/nvidia-h100"
    )
    assert added.status_code == 303, added.text
    user, _, _ = await account_rows(browser.settings, email)
    await fund(engine, str(user.id), 100_000_000)

    for action, fields, page in BUYING_FORMS:
        refused = await browser.submit(action, fields, form_page=page)
        assert refused.status_code == 403, (action, refused.text)
        assert MESSAGE in refused.text, action
        assert "data-unverified-banner" in refused.text, action

    await browser.verify_email(email)
    for action, fields, page in BUYING_FORMS:
        bought = await browser.submit(action, fields, form_page=page)
        assert bought.status_code == 303, (action, bought.text)


async def test_the_account_page_changes_the_address(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    page = await browser.page("/account")
    assert "(verified)" in page.text
    assert "data-unverified-banner" not in page.text

    wrong = await browser.submit(
        "/account/email", {"new_email": "new-" + email, "password": "wrong"}, form_page="/account"
    )
    assert wrong.status_code == 403
    assert "The current password is wrong." in wrong.text
    forged = await browser.http.post(
        "/account/email", data={"new_email": "new-" + email, "password": PASSWORD}
    )
    assert forged.status_code == 403

    changed = await browser.submit(
        "/account/email", {"new_email": "new-" + email, "password": PASSWORD}, form_page="/account"
    )
    assert changed.status_code == 303
    assert changed.headers["location"] == "/account?notice=email-changed"
    page = await browser.page("/account")
    assert "(not verified)" in page.text
    assert "data-unverified-banner" in page.text
    await browser.verify_email("new-" + email)
    assert "(verified)" in (await browser.page("/account")).text
