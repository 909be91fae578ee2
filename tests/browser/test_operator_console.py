"""An operator at work in the console, in Chromium, beside a customer in a browser of their own:
the customer buys H100s and leaves another configuration in the cart; an admin with two-factor
authentication logs in, finds the customer, refunds half of the order (re-entering the password,
the login being older than 15 minutes), replays a failed Stripe event, changes the H100 rate (the
customer's cart flags the line), and finds each of those steps in the audit log."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Locator, Page, expect
from sqlalchemy import select, update

from computebill.auth.models import AuthSession, User
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.money import format_money
from tests.browser.chromium import NewContext, screenshot
from tests.browser.flows import (
    PASSWORD,
    an_operator,
    buy_h100s_and_leave_more_in_the_cart,
    fresh_email,
    log_in_with_a_code,
    reload_until,
)
from tests.console.test_console_api import failed_event
from tests.support.platform import Platform

pytestmark = pytest.mark.slow

H100_SLUG = "nvidia-h100"
RATE_API = f"/api/v1/admin/gpus/{H100_SLUG}"


def dollars(cents: int) -> str:
    """Cents as typed into a console form: 1234 → "12.34"."""
    return f"{cents // 100}.{cents % 100:02d}"


async def _log_in_long_ago(live: Platform, email: str) -> None:
    """Every session of `email` logged in an hour ago, as if the operator had been at work for
    a while: a destructive form then asks for the password again."""
    engine = create_engine(live.settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            user_id = await db.scalar(select(User.id).where(User.email == email))
            assert isinstance(user_id, uuid.UUID)
            await db.execute(
                update(AuthSession)
                .where(AuthSession.user_id == user_id)
                .values(authenticated_at=datetime.now(UTC) - timedelta(hours=1))
            )
    finally:
        await engine.dispose()


async def _enter_password_if_asked(form: Locator) -> None:
    """A console form asks for the password when the login is older than 15 minutes."""
    field = form.get_by_label("Your password")
    if await field.count():
        await field.fill(PASSWORD)


async def test_an_admin_refunds_replays_and_reprices_and_the_audit_log_shows_it(
    new_context: NewContext, live: Platform
) -> None:
    shopper = await (await new_context()).new_page()
    customer_email = fresh_email()
    order_total, _ = await buy_h100s_and_leave_more_in_the_cart(shopper, live, customer_email)
    event_id = await failed_event(live.settings)

    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:
        operator = await an_operator(http, live.settings)
        admin_email, api_token = operator.email, operator.access_token
        seeded = await http.get(f"/api/v1/gpus/{H100_SLUG}")
        assert seeded.status_code == 200, seeded.text
        seeded_rate = int(seeded.json()["price_per_gpu_hour_cents"])
        try:
            admin = await (await new_context()).new_page()
            await log_in_with_a_code(admin, operator)
            await _open_the_overview_and_the_customer(admin, customer_email)
            await _log_in_long_ago(live, admin_email)
            await _refund_half(admin, order_total)
            await _replay(admin, event_id)
            await _raise_the_h100_rate(admin, shopper, seeded_rate)
            await _see_every_step_in_the_audit_log(admin, admin_email, event_id)
        finally:
            # The platform is shared by the session's browser tests, which price the seeded rate.
            headers = {"authorization": f"Bearer {api_token}"}
            proved = await http.post(
                "/api/v1/auth/reauthenticate", json={"password": PASSWORD}, headers=headers
            )
            assert proved.status_code == 204, proved.text
            restored = await http.patch(
                RATE_API, json={"price_per_gpu_hour_cents": seeded_rate}, headers=headers
            )
            assert restored.status_code == 200, restored.text


async def _open_the_overview_and_the_customer(admin: Page, customer_email: str) -> None:
    """The overview, the customer found by their address, their page, their order's page."""
    await admin.goto("/admin")
    await expect(admin.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    await screenshot(admin, "admin-overview")

    await admin.goto("/admin/customers")
    await admin.get_by_label("Id, address or name").fill(customer_email)
    await admin.get_by_role("button", name="Search").click()
    found = admin.locator("[data-customer]")
    await expect(found).to_have_count(1)
    await found.get_by_role("link", name=customer_email).click()
    await expect(admin.locator("[data-customer-email]")).to_have_text(customer_email)
    orders = admin.locator("[data-orders] [data-order]")
    await expect(orders).to_have_count(1)
    await screenshot(admin, "admin-customer")

    await orders.first.get_by_role("link").click()
    await expect(admin).to_have_url(re.compile(r"/admin/orders/[0-9a-f-]{36}$"))


async def _refund_half(admin: Page, order_total: int) -> None:
    """Half of the order on the page refunded: the login is an hour old, so the confirmation
    asks for the password; the order follows once Stripe's webhook has been processed."""
    await expect(admin.locator("[data-order-status]")).to_have_attribute(
        "data-order-status", "paid"
    )
    half = order_total // 2
    refund = admin.locator("[data-refund-form]")
    await refund.get_by_label("Amount").fill(dollars(half))
    await refund.get_by_label("Reason").fill("Half of the hours were not delivered")
    await refund.get_by_role("button", name="Review the refund").click()
    confirmation = admin.locator("[data-refund-confirmation]")
    await expect(confirmation.locator("[data-refund-summary]")).to_contain_text(
        format_money(half, "usd")
    )
    await expect(confirmation.locator("[data-recent-login-field]")).to_be_visible()
    await confirmation.get_by_label("Your password").fill(PASSWORD)
    await confirmation.get_by_role("button", name="Confirm the refund").click()
    await expect(admin.locator("[data-refund-requested]")).to_be_visible()
    await reload_until(admin, "[data-order-status='partially_refunded']")
    await expect(admin.locator("[data-figure='refunded']")).to_have_text(format_money(half, "usd"))

    # The customer's page, from the order's, shows it too.
    await admin.locator("[data-order-customer]").click()
    order_row = admin.locator("[data-orders] [data-order]")
    await expect(order_row.locator("[data-status-badge]")).to_have_attribute(
        "data-status-badge", "partially_refunded"
    )
    await expect(order_row).to_contain_text(format_money(half, "usd"))
    await screenshot(admin, "admin-customer")


async def _replay(admin: Page, event_id: str) -> None:
    """The failed event, found among the failed ones and replayed: nothing acts on its type."""
    await admin.goto("/admin/events")
    await admin.get_by_label("Status").select_option("failed")
    await admin.get_by_role("button", name="Filter").click()
    row = admin.locator(f"[data-event='{event_id}']")
    await expect(row).to_have_attribute("data-event-status", "failed")
    await row.get_by_role("link", name=event_id).click()
    await expect(admin.locator("[data-event-status]")).to_have_attribute(
        "data-event-status", "failed"
    )
    replay = admin.locator("[data-replay-form]")
    await _enter_password_if_asked(replay)
    await replay.get_by_role("button", name="Replay").click()
    await expect(admin.locator("[data-replayed]")).to_be_visible()
    await reload_until(admin, "[data-event-status='ignored']")
    await expect(admin.locator("[data-event-outcome]")).to_have_text(
        "customer.created is not acted on"
    )


async def _raise_the_h100_rate(admin: Page, shopper: Page, seeded_rate: int) -> None:
    """A dollar more per H100-hour: the line left in the customer's cart is flagged."""
    new_rate = seeded_rate + 100
    await admin.goto("/admin/catalog")
    model = admin.locator(f"[data-model='{H100_SLUG}']")
    folded = model.get_by_text("Change…")
    if await folded.count():
        await folded.click()
    rate_form = model.locator(f"[data-rate-form='{H100_SLUG}']")
    await rate_form.get_by_label("Rate per GPU-hour in dollars").fill(dollars(new_rate))
    await _enter_password_if_asked(rate_form)
    await rate_form.get_by_role("button", name="Set rate").click()
    await expect(model.locator("[data-rate]")).to_have_text(format_money(new_rate, "usd"))
    await shopper.goto("/cart")
    await expect(shopper.locator("[data-cart-line] [data-price-changed]")).to_be_visible()


async def _see_every_step_in_the_audit_log(admin: Page, admin_email: str, event_id: str) -> None:
    """The audit log, narrowed to this admin: the refund, the replay and the rate change."""
    await admin.goto("/admin/audit")
    await admin.get_by_label("Operator (id or address)").fill(admin_email)
    await admin.get_by_role("button", name="Filter").click()
    entries = admin.locator("[data-audit-entry]")
    entry = "[data-audit-entry][data-audit-action='{}']"
    for action in ("order.refunded", "event.replayed", "gpu_model.changed"):
        await expect(admin.locator(entry.format(action))).to_have_count(1)
    await expect(entries).to_have_count(3)
    await expect(admin.locator("[data-audit-action='event.replayed']")).to_contain_text(event_id)
    await expect(admin.locator("[data-audit-action='gpu_model.changed']")).to_contain_text(
        H100_SLUG
    )
