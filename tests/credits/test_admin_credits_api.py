"""`POST /api/v1/admin/customers/{id}/credits`: only an admin grants a customer credit or adjusts
their balance; the entry names the admin and the reason, a retried request posts once, and every
bad request is a 4xx problem naming what is wrong."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from computebill.config import Settings
from computebill.credits.schemas import AdminCreditOut
from tests.support.admins import make_admin
from tests.support.http import Api
from tests.support.openapi import assert_documented


async def admin_and_customer(api: Api, settings: Settings, email: str) -> tuple[str, str, str]:
    """An admin's access token, a customer's id and the customer's access token."""
    admin = await api.sign_up(email)
    await make_admin(
        settings, email, http=api.http, access_token=admin["access_token"], at=api.clock.now()
    )
    customer = await api.sign_up(f"customer-{secrets.token_hex(4)}@example.com")
    return admin["access_token"], customer["user"]["id"], customer["access_token"]


async def post_credit(
    api: Api, token: str, user_id: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} | ({"idempotency-key": key} if key else {})
    return await api.http.post(
        f"/api/v1/admin/customers/{user_id}/credits", json=body, headers=headers
    )


async def balance(api: Api, token: str) -> int:
    answer = await api.get("/api/v1/credits", token)
    return int(answer.json()["settled_balance_millicents"])


async def test_only_an_admin_may_post_credit(api: Api, settings: Settings, email: str) -> None:
    _, customer_id, customer_token = await admin_and_customer(api, settings, email)
    body = {"amount_cents": 500, "kind": "grant", "reason": "welcome"}

    anonymous = await api.http.post(f"/api/v1/admin/customers/{customer_id}/credits", json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    refused = await post_credit(api, customer_token, customer_id, body)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert await balance(api, customer_token) == 0


async def test_an_unknown_customer_is_a_404(api: Api, settings: Settings, email: str) -> None:
    admin_token, _, _ = await admin_and_customer(api, settings, email)
    answer = await post_credit(
        api, admin_token, str(uuid.uuid4()), {"amount_cents": 1, "kind": "grant", "reason": "x"}
    )
    assert answer.status_code == 404
    assert answer.json()["code"] == "customer_not_found"


async def test_a_grant_is_posted_with_its_admin_reason_and_expiry(
    api: Api, settings: Settings, email: str
) -> None:
    admin_token, customer_id, customer_token = await admin_and_customer(api, settings, email)
    admin_id = (await api.get("/api/v1/me", admin_token)).json()["id"]
    expires_at = (api.clock.now() + timedelta(days=30)).replace(microsecond=0)

    with capture_logs() as logs:
        answer = await post_credit(
            api,
            admin_token,
            customer_id,
            {
                "amount_cents": 1_000,
                "kind": "grant",
                "reason": "  launch promotion ",
                "expires_at": expires_at.isoformat(),
            },
        )

    assert answer.status_code == 201, answer.text
    assert_documented(api.app, answer, AdminCreditOut)
    posted = answer.json()
    entry = posted["entry"]
    assert (entry["kind"], entry["amount_millicents"], entry["balance_after_millicents"]) == (
        "grant",
        1_000_000,
        1_000_000,
    )
    assert (entry["admin_user_id"], entry["reason"]) == (admin_id, "launch promotion")
    assert posted["grant"]["grant_entry_id"] == entry["id"]
    assert posted["grant"]["remaining_millicents"] == 1_000_000
    assert posted["grant"]["expires_at"] == entry["expires_at"]
    assert posted["repeated"] is False
    assert await balance(api, customer_token) == 1_000_000
    [audit] = [line for line in logs if line["event"] == "credit_posted_by_admin"]
    assert (audit["admin_user_id"], audit["user_id"], audit["entry_id"]) == (
        admin_id,
        customer_id,
        entry["id"],
    )
    assert audit["reason"] == "launch promotion"


async def test_an_adjustment_goes_either_way(api: Api, settings: Settings, email: str) -> None:
    admin_token, customer_id, customer_token = await admin_and_customer(api, settings, email)
    up = await post_credit(
        api, admin_token, customer_id, {"amount_cents": 300, "kind": "adjustment", "reason": "a"}
    )
    down = await post_credit(
        api, admin_token, customer_id, {"amount_cents": -500, "kind": "adjustment", "reason": "b"}
    )
    assert (up.status_code, down.status_code) == (201, 201), down.text
    assert down.json()["grant"] is None
    assert down.json()["entry"]["balance_after_millicents"] == -200_000
    assert await balance(api, customer_token) == -200_000


async def test_a_retried_request_posts_once_and_without_a_key_each_request_posts(
    api: Api, settings: Settings, email: str
) -> None:
    admin_token, customer_id, customer_token = await admin_and_customer(api, settings, email)
    body = {"amount_cents": 250, "kind": "grant", "reason": "sorry for the outage"}

    first = await post_credit(api, admin_token, customer_id, body, key="ticket-4711")
    again = await post_credit(api, admin_token, customer_id, body, key="ticket-4711")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["entry"] == first.json()["entry"]
    assert again.json()["repeated"] is True
    assert await balance(api, customer_token) == 250_000

    changed = await post_credit(
        api, admin_token, customer_id, body | {"amount_cents": 260}, key="ticket-4711"
    )
    assert changed.status_code == 409
    assert changed.json()["code"] == "idempotency_key_reused"

    await post_credit(api, admin_token, customer_id, body)
    await post_credit(api, admin_token, customer_id, body)
    assert await balance(api, customer_token) == 750_000


GRANT = {"amount_cents": 100, "kind": "grant", "reason": "promotion"}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"amount_cents": 0}, "grant_not_positive", id="grant-zero"),
        pytest.param({"amount_cents": -100}, "grant_not_positive", id="grant-negative"),
        pytest.param(
            {"kind": "adjustment", "amount_cents": 0}, "adjustment_zero", id="adjustment-zero"
        ),
        pytest.param(
            {"kind": "adjustment", "expires_at": "2099-01-01T00:00:00Z"},
            "expiry_only_for_grants",
            id="adjustment-expiring",
        ),
        pytest.param(
            {"expires_at": "2020-01-01T00:00:00Z"}, "expiry_not_in_future", id="expiry-past"
        ),
        pytest.param({"reason": "   "}, "reason_required", id="reason-blank"),
        pytest.param({"reason": "promo\x00"}, "reason_invalid", id="reason-nul"),
        pytest.param({"reason": None}, "validation_error", id="reason-missing"),
        pytest.param({"reason": "x" * 501}, "validation_error", id="reason-too-long"),
        pytest.param({"kind": "usage"}, "validation_error", id="kind-not-admin"),
        pytest.param(
            {"expires_at": "2099-01-01T00:00:00"}, "validation_error", id="expiry-without-zone"
        ),
        pytest.param(
            {"expires_at": "9999-12-31T23:59:59-01:00"}, "validation_error", id="expiry-overflow"
        ),
        pytest.param({"amount_cents": 10**12}, "validation_error", id="amount-huge"),
        pytest.param({"amount_cents": 1.5}, "validation_error", id="amount-fraction"),
        pytest.param({"currency": "eur"}, "validation_error", id="unknown-field"),
    ],
)
async def test_a_bad_request_is_a_4xx_naming_what_is_wrong(
    api: Api, settings: Settings, email: str, change: dict[str, Any], code: str
) -> None:
    admin_token, customer_id, customer_token = await admin_and_customer(api, settings, email)
    body = {name: value for name, value in (GRANT | change).items() if value is not None}
    answer = await post_credit(api, admin_token, customer_id, body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code
    assert answer.json()["errors"]
    assert await balance(api, customer_token) == 0
