"""An order bought and paid through the Stripe emulator, the app and the worker as processes:
the fulfilment issues its one invoice (its lines and total the order's, the card named), the
worker e-mails it with its PDF attached, and fulfilling the paid session again issues none."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import func, select

from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.invoices.models import Invoice
from computebill.mail.models import OutboxEmail
from computebill.mail.service import attachments_of
from computebill.money import format_money
from computebill.payments import events
from computebill.payments.gateway import StripeGateway
from tests.invoices.paperwork import pdf_pages
from tests.support.platform import Platform
from tests.support.shopper import H100_UNIT_TOTAL, Shopper
from tests.support.stripe import payment_terms, with_stripe


async def _invoice_email(platform: Platform, invoice_id: str) -> tuple[OutboxEmail, bytes]:
    engine = create_engine(platform.settings)
    key = f"invoice:{invoice_id}"
    try:
        for _ in range(150):
            async with unit_of_work(create_sessionmaker(engine)) as db:
                email = await db.scalar(select(OutboxEmail).where(OutboxEmail.dedupe_key == key))
                files = await attachments_of(db, key)
            if email is not None:
                [pdf] = files
                assert (pdf.filename, pdf.content_type) == (
                    f"{email.subject.split()[2]}.pdf",
                    "application/pdf",
                )
                return email, pdf.content
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    raise AssertionError(f"no e-mail {key}")


async def test_a_paid_order_gets_one_invoice_e_mailed_with_its_pdf(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    order_id, session_id = await shopper.buy(quantity=2)
    order = await shopper.order(order_id)

    listed = (await http.get("/api/v1/invoices", headers=shopper.auth)).json()["invoices"]
    [summary] = listed
    assert summary["order_id"] == order_id
    invoice = (await http.get(f"/api/v1/invoices/{summary['id']}", headers=shopper.auth)).json()
    assert invoice["total_cents"] == order["total_cents"] == 2 * H100_UNIT_TOTAL
    assert invoice["credits_applied_cents"] == 0
    assert [(line["quantity"], line["amount_cents"]) for line in invoice["lines"]] == [
        (2, 2 * H100_UNIT_TOTAL)
    ]
    # Worded as the cart and Stripe's page word it; the invoice's quantity is the machines.
    assert invoice["lines"][0]["description"] == (
        "2 × NVIDIA H100 SXM · 24 vCPUs · 500 GB NVMe · 10 h · us-east-1"
    )
    assert invoice["payment_method"] == "Visa •••• 4242"
    assert invoice["payment_intent_id"] == order["payment_intent_id"]
    assert invoice["buyer"]["email"] == shopper.email

    email, pdf = await _invoice_email(platform, invoice["id"])
    assert email.recipient == shopper.email
    assert invoice["number"] in email.subject
    [page] = pdf_pages(pdf)
    for shown in (invoice["number"], format_money(invoice["total_cents"]), "Visa **** 4242"):
        assert shown in page

    # The paid session fulfilled again (a repeated webhook, the success page, reconciliation).
    engine = create_engine(platform.settings)
    try:
        stripe = with_stripe(
            platform.settings, api_base=platform.emulator.base_url, webhook_secret=None
        )
        session = await StripeGateway(stripe).retrieve_checkout(session_id)
        async with unit_of_work(create_sessionmaker(engine)) as db:
            outcome = await events.fulfil_session(
                db, session, terms=payment_terms(), now=datetime.now(UTC)
            )
            assert outcome.text == "order already paid"
            count = await db.scalar(
                select(func.count())
                .select_from(Invoice)
                .where(Invoice.order_id == uuid.UUID(order_id))
            )
            assert count == 1
    finally:
        await engine.dispose()
