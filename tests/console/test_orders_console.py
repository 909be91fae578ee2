"""The console's orders: every customer's orders listed and filtered (API and page), an order with
its lines, history, Stripe ids, refunds, disputes and events, and an admin's refund from the
page, confirmed on a second page, through the same service as the API's."""

from __future__ import annotations

import html
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import stripe

from computebill.auth.service import Role
from computebill.config import Settings
from computebill.orders.models import OrderStatus
from tests.console.operators import audit_entries, operator, operator_browser
from tests.console.records import add_event, add_order, every_page, sent_to_log_in
from tests.support.http import Api
from tests.support.markup import elements, the
from tests.support.pages import PASSWORD, Browser
from tests.support.stripe import STRIPE_KEY, EmulatorProcess

DAY = timedelta(days=1)
H100_2H = 1336  # what records.add_order's order costs


def _day(days_ago: int) -> datetime:
    return datetime(2026, 11, 20, 12, tzinfo=UTC) - days_ago * DAY


async def _customer_with_orders(api: Api, email: str, settings: Settings) -> tuple[str, list[str]]:
    """A customer and four orders of theirs, newest first: paid on Nov 20, refunded on Nov 19,
    paid and flagged for review on Nov 18, pending on Nov 17."""
    user_id = (await api.sign_up(email))["user"]["id"]
    made = [
        (OrderStatus.PAID, False),
        (OrderStatus.REFUNDED, False),
        (OrderStatus.PAID, True),
        (OrderStatus.PENDING, False),
    ]
    orders = [
        await add_order(
            settings, user_id, created_at=_day(days_ago), status=status, needs_review=review
        )
        for days_ago, (status, review) in enumerate(made)
    ]
    return user_id, orders


async def _listed(api: Api, token: str, query: str) -> list[str]:
    answer = await api.get(f"/api/v1/admin/orders?{query}", token)
    assert answer.status_code == 200, answer.text
    return [order["id"] for order in answer.json()["orders"]]


async def test_staff_list_every_customers_orders_by_status_review_days_and_customer(
    api: Api, settings: Settings, email: str
) -> None:
    token, _ = await operator(api, settings, Role.SUPPORT)
    user_id, (paid, refunded, flagged, pending) = await _customer_with_orders(api, email, settings)
    mine = f"customer={user_id}"

    assert await _listed(api, token, mine) == [paid, refunded, flagged, pending]
    assert await _listed(api, token, f"{mine}&status=paid") == [paid, flagged]
    assert await _listed(api, token, f"{mine}&review=true") == [flagged]
    assert await _listed(api, token, f"{mine}&since=2026-11-18&until=2026-11-19") == [
        refunded,
        flagged,
    ]
    assert await _listed(api, token, f"{mine}&until=2026-11-17") == [pending]
    answer = await api.get(f"/api/v1/admin/orders?{mine}&limit=1", token)
    [listed] = answer.json()["orders"]
    assert (listed["user_id"], listed["needs_review"], listed["total_cents"]) == (
        user_id,
        False,
        H100_2H,
    )
    # Every customer's orders, not only the caller's: the newest few include this one's.
    assert paid in await _listed(api, token, "since=2026-11-20&until=2026-11-20&limit=100")


@pytest.mark.parametrize(
    "query",
    [
        "since=2026-11-20&until=2026-11-19",
        "status=lost",
        "customer=nobody",
        "since=20-11-2026",
        "until=0",  # a number is not read as a Unix time
        "since=2026-11-1",
        "limit=101",
        "limit=0",
        "cursor=not-a-cursor",
    ],
)
async def test_a_bad_filter_is_a_problem(api: Api, settings: Settings, query: str) -> None:
    token, _ = await operator(api, settings, Role.SUPPORT)
    answer = await api.get(f"/api/v1/admin/orders?{query}", token)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_the_order_list_pages_without_repeating_an_order(
    api: Api, settings: Settings, email: str
) -> None:
    token, _ = await operator(api, settings, Role.ADMIN)
    user_id, made = await _customer_with_orders(api, email, settings)
    pages = await every_page(
        api, token, f"/api/v1/admin/orders?customer={user_id}&limit=3", "orders"
    )
    assert pages == [made[:3], made[3:]]


async def _order_with_events(settings: Settings, user_id: str) -> tuple[str, dict[str, str]]:
    suffix = secrets.token_hex(6)
    ids = {
        "checkout_session_id": f"cs_test_{suffix}",
        "payment_intent_id": f"pi_{suffix}",
        "charge_id": f"ch_{suffix}",
    }
    order_id = await add_order(settings, user_id, created_at=_day(0), stripe_ids=ids)
    return order_id, ids


async def test_an_order_comes_with_its_stripe_ids_refunds_disputes_and_events(
    api: Api, settings: Settings, email: str
) -> None:
    token, _ = await operator(api, settings, Role.SUPPORT)
    user_id = (await api.sign_up(email))["user"]["id"]
    order_id, ids = await _order_with_events(settings, user_id)
    pi, at = ids["payment_intent_id"], _day(0)
    completed = await add_event(
        settings,
        event_type="checkout.session.completed",
        received_at=at,
        obj={"id": ids["checkout_session_id"], "payment_intent": pi},
    )
    refunded = await add_event(
        settings,
        event_type="charge.refunded",
        received_at=at + timedelta(minutes=1),
        obj={"id": ids["charge_id"], "payment_intent": pi, "amount_refunded": 100},
        outcome="order partially_refunded",
    )
    disputed = await add_event(
        settings,
        event_type="charge.dispute.created",
        received_at=at + timedelta(minutes=2),
        obj={
            "id": f"du_{secrets.token_hex(6)}",
            "payment_intent": pi,
            "amount": 1236,
            "reason": "fraudulent",
            "status": "needs_response",
        },
    )
    await add_event(  # another payment's
        settings,
        event_type="charge.refunded",
        received_at=at,
        obj={"id": "ch_other", "payment_intent": f"pi_other_{secrets.token_hex(4)}"},
    )

    answer = await api.get(f"/api/v1/admin/orders/{order_id}", token)

    assert answer.status_code == 200, answer.text
    order = answer.json()
    assert {name: order[name] for name in ids} == ids
    assert (order["user_id"], order["status"], order["total_cents"]) == (user_id, "paid", H100_2H)
    assert [line["gpu_slug"] for line in order["lines"]] == ["nvidia-h100"]
    assert [change["to_status"] for change in order["history"]] == ["paid"]
    assert [event["id"] for event in order["events"]] == [completed, refunded, disputed]
    assert order["events"][1]["outcome"] == "order partially_refunded"
    [dispute] = order["disputes"]
    assert (dispute["amount_cents"], dispute["reason"], dispute["event_id"]) == (
        1236,
        "fraudulent",
        disputed,
    )
    assert order["refunds"] == []
    assert order["refundable_cents"] == H100_2H

    missing = await api.get("/api/v1/admin/orders/00000000-0000-0000-0000-000000000000", token)
    assert missing.status_code == 404


async def test_customers_and_strangers_cannot_read_the_console_orders(
    api: Api, settings: Settings, email: str
) -> None:
    customer = await api.sign_up(email)
    order_id = await add_order(settings, customer["user"]["id"], created_at=_day(0))
    for path in ("/api/v1/admin/orders", f"/api/v1/admin/orders/{order_id}"):
        own = await api.get(path, customer["access_token"])
        assert own.status_code == 403, own.text
        assert own.headers["content-type"] == "application/problem+json"
        assert (await api.http.get(path)).status_code == 401


# The pages ---------------------------------------------------------------------------------


async def test_anonymous_visitors_are_sent_to_log_in(browser: Browser) -> None:
    await sent_to_log_in(browser, "/admin/orders", f"/admin/orders/{uuid.uuid4()}")


async def test_customers_get_403_on_the_order_pages_and_forms(
    browser: Browser, settings: Settings, email: str
) -> None:
    await browser.sign_up(email)
    me = (await browser.http.get("/api/v1/me", headers=_bearer(browser))).json()["id"]
    order_id = await add_order(settings, me, created_at=_day(0))
    for path in ("/admin/orders", f"/admin/orders/{order_id}"):
        assert (await browser.page(path)).status_code == 403
    refund = await browser.submit(
        f"/admin/orders/{order_id}/refund", {"amount": "1.00"}, form_page="/account/orders"
    )
    assert refund.status_code == 403


def _bearer(browser: Browser) -> dict[str, str]:
    return {"authorization": f"Bearer {browser.access_token}"}


async def test_the_orders_page_filters_links_and_pages(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    await operator_browser(browser, settings, Role.SUPPORT)
    user_id, (paid, _, flagged, pending) = await _customer_with_orders(api, email, settings)

    answer = await browser.page(f"/admin/orders?customer={user_id}&status=paid&review=&since=")
    assert answer.status_code == 200, answer.text
    rows = elements(answer.text, "data-order")
    assert [row.attrs["data-order"] for row in rows] == [paid, flagged]
    assert rows[0].find("a", href=f"/admin/orders/{paid}")
    assert rows[0].find("a", href=f"/admin/customers/{user_id}")
    options = the(answer.text, "data-order-filters").find("option")
    assert [option["value"] for option in options if "selected" in option] == ["paid"]

    reviewed = await browser.page(f"/admin/orders?customer={user_id}&review=1")
    assert [row.attrs["data-order"] for row in elements(reviewed.text, "data-order")] == [flagged]

    days = await browser.page(f"/admin/orders?customer={user_id}&since=2026-11-17&until=2026-11-18")
    assert [row.attrs["data-order"] for row in elements(days.text, "data-order")] == [
        flagged,
        pending,
    ]

    # Pages of 25: this customer's four fit one, so no "Older" link.
    assert 'rel="next"' not in answer.text

    for bad in ("status=lost", "customer=nobody", "since=2026-11-20&until=2026-11-01"):
        refused = await browser.page(f"/admin/orders?{bad}")
        assert refused.status_code == 422, bad
        assert the(refused.text, "data-filter-error").text
        assert elements(refused.text, "data-order") == []


async def test_support_sees_the_order_page_with_its_events_and_dashboard_links(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    await operator_browser(browser, settings, Role.SUPPORT)
    user_id = (await api.sign_up(email))["user"]["id"]
    order_id, ids = await _order_with_events(settings, user_id)
    event_id = await add_event(
        settings,
        event_type="charge.refunded",
        received_at=_day(0),
        obj={"id": ids["charge_id"], "payment_intent": ids["payment_intent_id"]},
    )

    answer = await browser.page(f"/admin/orders/{order_id}")

    assert answer.status_code == 200, answer.text
    assert the(answer.text, "data-order-status").attrs["data-order-status"] == "paid"
    assert len(elements(answer.text, "data-order-line")) == 1
    assert the(answer.text, "data-line-description").text == (
        "2 × NVIDIA H100 SXM · 24 vCPUs · 500 GB NVMe · 2 h · us-east-1"
    )
    assert [h.attrs["data-history"] for h in elements(answer.text, "data-history")] == ["paid"]
    [event] = elements(answer.text, "data-order-event")
    assert event.find("a", href=f"/admin/events/{event_id}")
    links = {
        e.attrs["data-stripe-link"]: e.attrs["href"]
        for e in elements(answer.text, "data-stripe-link")
    }
    pi, charge = ids["payment_intent_id"], ids["charge_id"]
    assert links == {
        pi: f"https://dashboard.stripe.com/test/payments/{pi}",
        charge: f"https://dashboard.stripe.com/test/payments/{charge}",
    }
    # A Checkout Session has no page in the dashboard: its id is shown plain.
    plain = [e.attrs["data-stripe-id"] for e in elements(answer.text, "data-stripe-id")]
    assert plain == [ids["checkout_session_id"]]
    assert the(answer.text, "data-order-customer").attrs["href"] == f"/admin/customers/{user_id}"
    # Support sees the order, not the refund form, and cannot send it.
    assert elements(answer.text, "data-refund-form") == []
    page = f"/admin/orders/{order_id}"
    review = await browser.submit(f"{page}/refund", {"amount": "1.00"}, form_page=page)
    assert review.status_code == 403
    confirm = await browser.submit(
        f"{page}/refund/confirm", {"amount_cents": "100", "idempotency_key": "k"}, form_page=page
    )
    assert confirm.status_code == 403


# An admin's refund from the page, against the Stripe emulator -----------------------------

HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


def _hidden_fields(markup: str) -> dict[str, str]:
    """What the confirmation form sends, as a browser would."""
    return {name: html.unescape(value) for name, value in HIDDEN.findall(markup)}


@dataclass
class PaidOrder:
    """A customer's order paid by card at the emulator, and an admin signed in to refund it on
    an app whose Stripe is the emulator."""

    browser: Browser
    admin_email: str
    order_id: str
    payment_intent_id: str
    emulator: EmulatorProcess

    @property
    def page(self) -> str:
        return f"/admin/orders/{self.order_id}"

    def refunded_at_stripe(self) -> int:
        intent = _stripe(self.emulator).v1.payment_intents.retrieve(
            self.payment_intent_id, params={"expand": ["latest_charge"]}
        )
        charge = intent.latest_charge
        assert charge is not None
        assert not isinstance(charge, str)
        return int(charge.amount_refunded)

    async def review(self, amount: str, reason: str = "") -> httpx.Response:
        """The refund form sent: the confirmation page, or the order page with the error."""
        return await self.browser.submit(
            f"{self.page}/refund", {"amount": amount, "reason": reason}, form_page=self.page
        )

    async def confirm(self, fields: dict[str, str]) -> httpx.Response:
        return await self.browser.http.post(f"{self.page}/refund/confirm", data=fields)


def _stripe(emulator: EmulatorProcess) -> stripe.StripeClient:
    """The emulator as the app's key sees it."""
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": emulator.base_url})


@pytest.fixture
async def paid(
    shop_browser: Browser,
    api: Api,
    settings: Settings,
    email: str,
    checkout_emulator: EmulatorProcess,
) -> PaidOrder:
    admin_email = await operator_browser(shop_browser, settings, Role.ADMIN)
    user_id = (await api.sign_up(email))["user"]["id"]
    intent = _stripe(checkout_emulator).v1.payment_intents.create(
        params={
            "amount": H100_2H,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert intent.status == "succeeded", intent
    order_id = await add_order(
        shop_browser.settings,
        user_id,
        created_at=shop_browser.clock.now(),
        stripe_ids={"payment_intent_id": intent.id},
    )
    return PaidOrder(shop_browser, admin_email, order_id, intent.id, checkout_emulator)


async def test_an_admin_refunds_part_of_an_order_after_confirming_it(paid: PaidOrder) -> None:
    browser, page = paid.browser, paid.page
    form = the((await browser.page(page)).text, "data-refund-form")
    assert form.find("form", action=f"{page}/refund")

    review = await paid.review("5.25", reason="GPU faulty <b>")

    assert review.status_code == 200, review.text
    summary = the(review.text, "data-refund-summary").text
    assert summary.startswith(f"Refund $5.25 of order {paid.order_id[:8]} to ")
    assert "GPU faulty &lt;b&gt;" in review.text
    assert elements(review.text, "data-recent-login-field") == []  # logged in just now
    assert paid.refunded_at_stripe() == 0  # nothing until confirmed

    confirmation = _hidden_fields(review.text)
    done = await paid.confirm(confirmation)

    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(f"{page}?refund=re_")
    assert paid.refunded_at_stripe() == 525
    again = await paid.confirm(confirmation)
    assert again.headers["location"] == done.headers["location"]  # sent twice: refunded once
    assert paid.refunded_at_stripe() == 525
    shown = await browser.page(done.headers["location"])
    assert the(shown.text, "data-refund-requested").text.startswith("Refund re_")

    operator_api = Api(app=browser.app, http=browser.http, clock=browser.clock)
    entries = await audit_entries(
        operator_api, browser.access_token, actor=paid.admin_email, action="order.refunded"
    )
    # Each request is audited; both name the one refund.
    refund_id = done.headers["location"].split("=")[1]
    assert [(e["target_id"], e["after"], e["reason"]) for e in entries] == [
        (paid.order_id, {"refund_id": refund_id, "amount_cents": 525}, "GPU faulty <b>")
    ] * 2


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("5.251", "Enter an amount in dollars and cents"),
        ("-1", "Enter an amount in dollars and cents"),
        ("0", "Enter an amount in dollars and cents"),
        ("13.37", "At most $13.36 can still be refunded."),
    ],
)
async def test_a_bad_amount_comes_back_on_the_order_page(
    paid: PaidOrder, amount: str, message: str
) -> None:
    refused = await paid.review(amount)
    assert refused.status_code == 422
    assert the(refused.text, "data-refund-error").text.startswith(message)
    assert the(refused.text, "data-refund-form").find("input", name="amount", value=amount)
    assert paid.refunded_at_stripe() == 0


async def test_an_empty_amount_refunds_everything_left(paid: PaidOrder) -> None:
    review = await paid.review("")
    assert the(review.text, "data-refund-summary").text.startswith("Refund $13.36 of order")
    done = await paid.confirm(_hidden_fields(review.text))
    assert done.status_code == 303, done.text
    assert paid.refunded_at_stripe() == H100_2H


async def test_a_refund_confirmed_long_after_logging_in_needs_the_password(
    paid: PaidOrder,
) -> None:
    paid.browser.clock.advance(minutes=16)

    review = await paid.review("1.00")
    assert review.status_code == 200, review.text
    assert the(review.text, "data-recent-login-field")
    confirmation = _hidden_fields(review.text)

    assert (await paid.confirm(confirmation)).status_code == 403
    assert (await paid.confirm({**confirmation, "password": "not it"})).status_code == 403
    assert paid.refunded_at_stripe() == 0

    done = await paid.confirm({**confirmation, "password": PASSWORD})
    assert done.status_code == 303, done.text
    assert paid.refunded_at_stripe() == 100


async def test_a_refund_without_the_csrf_token_is_refused(paid: PaidOrder) -> None:
    review = await paid.review("1.00")
    forged = {k: v for k, v in _hidden_fields(review.text).items() if k != "csrf_token"}
    assert (await paid.confirm(forged)).status_code == 403
    assert paid.refunded_at_stripe() == 0


async def test_a_reason_with_a_control_character_is_refused(paid: PaidOrder) -> None:
    refused = await paid.review("1.00", reason="a\x00b")
    assert refused.status_code == 422
    browser = paid.browser
    answer = await Api(app=browser.app, http=browser.http, clock=browser.clock).call(
        "POST",
        f"/api/v1/admin/orders/{paid.order_id}/refund",
        browser.access_token,
        {"reason": "a\x00b"},
    )
    assert answer.status_code == 422, answer.text
    assert paid.refunded_at_stripe() == 0
