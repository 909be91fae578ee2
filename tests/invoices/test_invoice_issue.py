"""Invoices of top-ups paid through the Stripe emulator: one per top-up, issued in the
fulfilment's transaction, whatever repeats; numbered CB-<year>-<six digits>; the card named; the
e-mail job asked for; and issued invoices cannot be changed."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.config import Settings
from computebill.invoices import service
from computebill.invoices.models import Invoice, InvoiceLine
from computebill.invoices.pdf import invoice_pdf
from computebill.jobs import JobName, take_requested_jobs
from computebill.payments import events
from computebill.payments.gateway import StripeGateway
from tests.credits.ledger import add_user
from tests.invoices.paperwork import add_paid_top_up, pdf_pages
from tests.payments.top_ups import deliver, emulator_event, open_top_up
from tests.support.shopper import pay
from tests.support.stripe import EmulatorProcess, payment_terms, with_stripe

AMOUNT = 2500


@pytest.fixture(scope="module")
def gateway(settings: Settings, checkout_emulator: EmulatorProcess) -> StripeGateway:
    return StripeGateway(
        with_stripe(settings, api_base=checkout_emulator.base_url, webhook_secret=None)
    )


async def _invoices_of_top_up(db: AsyncSession, top_up_id: uuid.UUID) -> list[Invoice]:
    return list(await db.scalars(select(Invoice).where(Invoice.top_up_id == top_up_id)))


async def test_a_paid_top_up_gets_one_invoice_whatever_repeats(
    db_session: AsyncSession,
    gateway: StripeGateway,
    checkout_emulator: EmulatorProcess,
) -> None:
    user_id = await add_user(db_session)
    top_up = await open_top_up(db_session, gateway, user_id, AMOUNT)
    assert top_up.checkout_url is not None
    assert top_up.checkout_session_id is not None
    assert (await pay(top_up.checkout_url)).status_code == 303
    take_requested_jobs(db_session)

    session_id = top_up.checkout_session_id
    completed = emulator_event(
        checkout_emulator,
        "checkout.session.completed",
        lambda obj: obj.get("id") == session_id,
    )
    assert await deliver(db_session, gateway, completed) == "top-up credited"
    assert JobName.SEND_INVOICE_EMAIL in [job.name for job in take_requested_jobs(db_session)]
    # The webhook again, the success page, reconciliation: nothing more is issued.
    assert await deliver(db_session, gateway, completed) == "top-up credited"
    now = datetime.now(UTC)
    repeated = await events.fulfill_checkout(
        db_session, gateway, session_id, terms=payment_terms(), now=now
    )
    assert repeated.text == "top-up already paid"
    assert await events.reconcile_top_up(
        db_session, gateway, top_up.id, terms=payment_terms(), now=now
    )
    assert take_requested_jobs(db_session) == []

    [invoice] = await _invoices_of_top_up(db_session, top_up.id)
    assert re.fullmatch(rf"CB-{invoice.issued_at.year}-\d{{6}}", invoice.number)
    assert invoice.number == service.invoice_number(invoice.year, invoice.sequence)
    assert (invoice.subtotal_cents, invoice.credits_applied_cents, invoice.total_cents) == (
        AMOUNT,
        0,
        AMOUNT,
    )
    assert invoice.payment_method == "Visa •••• 4242"
    assert invoice.payment_intent_id == top_up.payment_intent_id
    assert invoice.user_id == user_id
    assert invoice.order_id is None

    detail = await service.get_invoice(db_session, invoice.id, user_id=user_id)
    assert [(line.description, line.quantity, line.amount_cents) for line in detail.lines] == [
        ("Compute credit (prepaid)", 1, AMOUNT)
    ]
    [page] = pdf_pages(invoice_pdf(detail))
    assert invoice.number in page
    assert "Compute credit (prepaid)" in page
    assert "$25.00" in page
    assert "Visa **** 4242" in page
    assert "Page 1 of 1" in page


async def test_issued_invoices_and_their_lines_cannot_be_changed(
    db_session: AsyncSession, settings: Settings
) -> None:
    now = datetime.now(UTC)
    user_id = await add_user(db_session)
    top_up = await add_paid_top_up(db_session, user_id, 1000, now=now)
    invoice = await service.issue_for_top_up(
        db_session, top_up, seller=service.Seller.of(settings), payment_method="Card", now=now
    )
    again = await service.issue_for_top_up(
        db_session, top_up, seller=service.Seller.of(settings), payment_method="Card", now=now
    )
    assert again.id == invoice.id
    for statement in (
        update(Invoice).where(Invoice.id == invoice.id).values(total_cents=0),
        update(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id).values(quantity=2),
    ):
        with pytest.raises(DBAPIError, match="issued paperwork"):
            async with db_session.begin_nested():
                await db_session.execute(statement)
    assert (
        await db_session.scalar(
            select(func.count()).select_from(Invoice).where(Invoice.top_up_id == top_up.id)
        )
        == 1
    )


@pytest.mark.parametrize(
    ("intent", "named"),
    [
        pytest.param(
            {
                "latest_charge": {
                    "payment_method_details": {"card": {"brand": "mastercard", "last4": "4444"}}
                }
            },
            "Mastercard •••• 4444",
            id="card",
        ),
        pytest.param(
            {"latest_charge": {"payment_method_details": {"type": "us_bank_account"}}},
            "Bank account (ACH)",
            id="bank",
        ),
        pytest.param({"latest_charge": "ch_123"}, "Card", id="charge-not-expanded"),
        pytest.param("pi_123", "Card", id="intent-not-expanded"),
    ],
)
def test_an_invoice_names_the_card_when_stripe_says_it(intent: object, named: str) -> None:
    assert events.payment_method_of({"payment_intent": intent}) == named
