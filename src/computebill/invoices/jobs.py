"""Background jobs of paperwork: an invoice's e-mail with its PDF, and the monthly statements."""

from __future__ import annotations

import uuid

import structlog

from computebill.db import unit_of_work
from computebill.invoices import service
from computebill.invoices.pdf import invoice_pdf
from computebill.jobs import JobContext
from computebill.mail.compose import Attachment
from computebill.mail.service import send_email
from computebill.money import format_money

log = structlog.get_logger(__name__)


async def send_invoice_email(ctx: JobContext, invoice_id: str) -> None:
    """E-mail an invoice with its PDF attached, once (key `invoice:<id>`)."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        detail = await service.get_invoice(db, uuid.UUID(invoice_id), user_id=None)
        invoice = detail.invoice
        link = f"{str(ctx.settings.public_base_url).rstrip('/')}/billing/invoices/{invoice.id}"
        await send_email(
            db,
            backend=ctx.settings.mail_backend,
            dedupe_key=f"invoice:{invoice.id}",
            recipient=invoice.buyer_email,
            subject=f"Your invoice {invoice.number} from {invoice.seller_name}",
            body="\n".join(
                [
                    f"Thank you for your payment of "
                    f"{format_money(invoice.total_cents, invoice.currency)}.",
                    "",
                    f"Invoice {invoice.number} is attached as a PDF, and is on your billing page:",
                    link,
                ]
            ),
            attachments=[
                Attachment(f"{invoice.number}.pdf", "application/pdf", invoice_pdf(detail))
            ],
            now=ctx.clock.now(),
        )


async def issue_monthly_statements(ctx: JobContext) -> None:
    """Issue the previous month's statements that are missing (daily: the 1st's run issues
    them, the runs after it find none to issue)."""
    now = ctx.clock.now()
    month = service.previous_month(now)
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        issued = await service.issue_statements(
            db, month, seller=service.Seller.of(ctx.settings), now=now
        )
    if issued:
        log.info("statements_issued", month=f"{month:%Y-%m}", issued=issued)
