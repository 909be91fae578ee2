"""Order history and order pages: the customer's orders with their status, totals, payments,
refunds and receipt; nobody else's. Orders are made through the services, as checkout and the
payment events make them, against the test database (Stripe is not involved)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.auth.models import User
from computebill.cart import service as cart
from computebill.cart.models import CartItem
from computebill.catalog.service import load_catalog, validate_configuration
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.money import format_money
from computebill.orders import service as orders
from computebill.orders.models import OrderStatus
from computebill.payments import checkout, pages
from tests.support.markup import Element, elements, the
from tests.support.pages import Browser

H100 = {"gpu": "nvidia-h100", "gpu_count": 2, "vcpus": 24, "storage_gb": 500, "hours": 10}
H100_TOTAL = 6680  # (2 × 249 + 24 × 5 + 500 × 0.1) ¢ × 10 h
A100 = {"gpu": "nvidia-a100", "gpu_count": 1, "vcpus": 12, "storage_gb": 500, "hours": 5}


@dataclass
class Shop:
    """Places orders for a user the way checkout and Stripe's events would."""

    sessions: async_sessionmaker[AsyncSession]

    async def user_id(self, email: str) -> uuid.UUID:
        async with self.sessions() as db:
            found = await db.scalar(select(User.id).where(User.email == email))
            assert found is not None, email
            return found

    async def order(
        self,
        email: str,
        status: OrderStatus,
        *items: dict[str, Any],
        quantity: int = 1,
        refunded_cents: int = 0,
        checkout_open: bool = False,
    ) -> uuid.UUID:
        """An order of `items` (H100 when none), moved to `status` (through `paid` for refunds
        and disputes); each in its own transaction, so each has its own creation time."""
        user_id = await self.user_id(email)
        now = datetime.now(UTC)
        async with unit_of_work(self.sessions) as db:
            catalog = await load_catalog(db)
            for item in items or (H100,):
                valid = validate_configuration(catalog, **item, region=None, quantity=quantity)
                await cart.add_item(db, user_id=user_id, catalog=catalog, valid=valid)
            prepared = await checkout.prepare_checkout(
                db,
                user_id=user_id,
                catalog=catalog,
                idempotency_key=secrets.token_hex(8),
                now=now,
            )
            order = prepared.order
            # What fulfilment does: what was bought leaves the cart (here, all of it).
            await db.execute(delete(CartItem).where(CartItem.user_id == user_id))
            session_id = f"cs_test_{secrets.token_hex(8)}"
            order.checkout_session_id = session_id
            if checkout_open:
                order.checkout_url = f"https://checkout.example.com/{session_id}"
                order.checkout_expires_at = now + orders.CHECKOUT_LIFETIME
            if status is OrderStatus.PENDING:
                return order.id
            settled = status not in {
                OrderStatus.EXPIRED,
                OrderStatus.CANCELED,
                OrderStatus.PAYMENT_FAILED,
            }
            if settled:
                assert orders.transition(
                    order, OrderStatus.PAID, reason=f"checkout {session_id} paid", now=now, db=db
                )
                order.payment_intent_id = f"pi_test_{secrets.token_hex(8)}"
                order.paid_at = now
            if refunded_cents:
                await orders.record_refund(
                    db,
                    order,
                    refund_id=f"re_test_{secrets.token_hex(8)}",
                    amount_cents=refunded_cents,
                    status="succeeded",
                    now=now,
                )
                order.refunded_cents = refunded_cents
            if status is not OrderStatus.PAID:
                assert orders.transition(order, status, reason="test", now=now, db=db)
            return order.id


@pytest.fixture
async def shop(settings: Settings) -> AsyncIterator[Shop]:
    engine = create_engine(settings)
    try:
        yield Shop(create_sessionmaker(engine))
    finally:
        await engine.dispose()


def _rows(html: str) -> list[Element]:
    return elements(html, "data-order-row")


async def test_order_pages_need_a_signed_in_user(browser: Browser) -> None:
    for path in ("/account/orders", f"/account/orders/{uuid.uuid4()}"):
        answer = await browser.page(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=/account/orders")


async def test_a_new_account_has_no_orders_yet(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    page = await browser.page("/account/orders")
    assert page.status_code == 200
    assert _rows(page.text) == []
    assert "No orders yet" in page.text


async def test_the_history_lists_orders_newest_first_with_their_status_and_total(
    browser: Browser, shop: Shop, email: str
) -> None:
    await browser.sign_up(email)
    placed = [
        (await shop.order(email, OrderStatus.PAID), "paid", "Paid", H100_TOTAL),
        (await shop.order(email, OrderStatus.PENDING, A100), "pending", "Pending", None),
        (
            await shop.order(email, OrderStatus.PAYMENT_FAILED, quantity=2),
            "payment_failed",
            "Payment failed",
            2 * H100_TOTAL,
        ),
        (
            await shop.order(email, OrderStatus.PARTIALLY_REFUNDED, refunded_cents=1000),
            "partially_refunded",
            "Partially refunded",
            H100_TOTAL,
        ),
        (
            await shop.order(email, OrderStatus.REFUNDED, refunded_cents=H100_TOTAL),
            "refunded",
            "Refunded",
            H100_TOTAL,
        ),
        (await shop.order(email, OrderStatus.EXPIRED), "expired", "Expired", H100_TOTAL),
    ]

    page = await browser.page("/account/orders")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert [row.attrs["data-order-id"] for row in rows] == [str(o[0]) for o in reversed(placed)]
    for row, (order_id, status, label, total) in zip(rows, reversed(placed), strict=True):
        assert row.attrs["data-order-status"] == status
        assert label in row.text
        assert row.find("a", href=f"/account/orders/{order_id}")
        if total is not None:
            assert format_money(total) in row.text
    partially_refunded = rows[2]
    assert "$10.00 refunded" in partially_refunded.text
    assert "Refunded" not in rows[0].text  # the expired one


async def test_the_history_pages_through_older_orders(
    browser: Browser, shop: Shop, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    await browser.sign_up(email)
    placed = [await shop.order(email, OrderStatus.PAID) for _ in range(3)]

    first = await browser.page("/account/orders")
    assert [row.attrs["data-order-id"] for row in _rows(first.text)] == [
        str(placed[2]),
        str(placed[1]),
    ]
    [older] = elements(first.text, "data-older-orders")
    assert older.text == "Older orders"
    second = await browser.page(str(older.attrs["href"]))
    assert [row.attrs["data-order-id"] for row in _rows(second.text)] == [str(placed[0])]
    assert elements(second.text, "data-older-orders") == []
    assert (await browser.page("/account/orders?cursor=not-a-cursor")).status_code == 422


async def test_the_order_page_shows_lines_history_refunds_and_the_emailed_receipt(
    browser: Browser, shop: Shop, email: str, settings: Settings
) -> None:
    await browser.sign_up(email)
    order_id = await shop.order(
        email, OrderStatus.PARTIALLY_REFUNDED, H100, A100, refunded_cents=1234
    )

    page = await browser.page(f"/account/orders/{order_id}")
    assert page.status_code == 200
    async with shop.sessions() as db:
        detail = await orders.get_order(db, user_id=None, order_id=order_id)
        receipt = await orders.receipt(db, order_id)

    lines = elements(page.text, "data-order-line")
    assert len(lines) == 2
    assert [line.text for line in elements(page.text, "data-line-description")] == [
        "2 × NVIDIA H100 SXM · 24 vCPUs · 500 GB NVMe · 10 h · us-east-1",
        "1 × NVIDIA A100 80GB · 12 vCPUs · 500 GB NVMe · 5 h · us-east-1",
    ]
    assert format_money(H100_TOTAL) in lines[0].text
    assert format_money(detail.order.total_cents) in elements(page.text, "data-order-total")[0].text
    assert [
        change.attrs["data-status-change"] for change in elements(page.text, "data-status-change")
    ] == ["pending", "paid", "partially_refunded"]
    [refund] = elements(page.text, "data-refund")
    assert "$12.34" in refund.text
    assert the(page.text, "data-status-badge").attrs["data-status-badge"] == "partially_refunded"
    # The receipt is the one the e-mail carries, word for word.
    assert the(page.text, "data-receipt").text == " ".join(receipt.body.split())
    assert receipt.subject in page.text
    assert "Print receipt" in page.text


async def test_an_unpaid_order_has_no_receipt_and_offers_its_open_checkout(
    browser: Browser, shop: Shop, email: str
) -> None:
    await browser.sign_up(email)
    order_id = await shop.order(email, OrderStatus.PENDING, checkout_open=True)

    page = await browser.page(f"/account/orders/{order_id}")
    assert page.status_code == 200
    assert elements(page.text, "data-receipt") == []
    assert "Continue to payment" in page.text
    assert "https://checkout.example.com/cs_test_" in page.text

    failed = await shop.order(email, OrderStatus.PAYMENT_FAILED, checkout_open=True)
    page = await browser.page(f"/account/orders/{failed}")
    assert "Continue to payment" not in page.text
    assert "The payment did not go through" in page.text


async def test_another_users_order_is_not_found(
    browser: Browser, other_browser: Browser, shop: Shop, email: str
) -> None:
    await browser.sign_up(email)
    await other_browser.sign_up("other-" + email)
    order_id = await shop.order(email, OrderStatus.PAID)
    assert (await browser.page(f"/account/orders/{order_id}")).status_code == 200

    answer = await other_browser.page(f"/account/orders/{order_id}")
    assert answer.status_code == 404
    assert "No such order." in answer.text
    assert str(order_id) not in answer.text
    assert _rows((await other_browser.page("/account/orders")).text) == []
    assert (await other_browser.page("/account/orders/not-an-id")).status_code == 404
