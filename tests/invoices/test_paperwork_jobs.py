"""The worker's paperwork: the daily statements job issues the month before's missing statements
once however often it runs, and an invoice's e-mail goes once, with its PDF."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.config import Settings
from computebill.credits.models import EntryKind
from computebill.db import create_sessionmaker, unit_of_work
from computebill.invoices import service
from computebill.invoices.jobs import issue_monthly_statements, send_invoice_email
from computebill.invoices.models import Statement
from computebill.jobs import JobName
from computebill.mail.models import OutboxEmail
from computebill.mail.service import attachments_of
from tests.credits.ledger import add_user, post
from tests.invoices.paperwork import add_paid_top_up, pdf_pages
from tests.support.jobs import RecordingPublisher, job_context


async def test_the_daily_job_issues_last_months_statements_once(
    settings: Settings, engine: AsyncEngine
) -> None:
    sessions = create_sessionmaker(engine)
    month = service.previous_month(datetime.now(UTC))
    async with unit_of_work(sessions) as db:
        user_id = await add_user(db)
        await post(
            db,
            user_id,
            EntryKind.TOP_UP,
            3_000_000,
            now=datetime.combine(month, datetime.min.time(), UTC),
        )
    context = job_context(settings, sessions, RecordingPublisher())
    await issue_monthly_statements(context)
    await issue_monthly_statements(context)  # the next day's run, or a retry
    async with unit_of_work(sessions) as db:
        [statement] = await db.scalars(select(Statement).where(Statement.user_id == user_id))
    assert statement.month == month
    assert (statement.opening_balance_millicents, statement.closing_balance_millicents) == (
        0,
        3_000_000,
    )


async def test_an_invoice_is_e_mailed_once_with_its_pdf(
    settings: Settings, engine: AsyncEngine
) -> None:
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    fulfilment = RecordingPublisher()
    async with unit_of_work(sessions, fulfilment) as db:
        user_id = await add_user(db)
        top_up = await add_paid_top_up(db, user_id, 1500, now=now)
        invoice = await service.issue_for_top_up(
            db, top_up, seller=service.Seller.of(settings), payment_method="Card", now=now
        )
        assert fulfilment.sent == []  # sent only once the issue has committed
    assert [(r.name, r.args) for r in fulfilment.sent] == [
        (JobName.SEND_INVOICE_EMAIL, (str(invoice.id),))
    ]
    context = job_context(settings, sessions, RecordingPublisher())
    await send_invoice_email(context, str(invoice.id))
    await send_invoice_email(context, str(invoice.id))  # retried
    key = f"invoice:{invoice.id}"
    async with unit_of_work(sessions) as db:
        emails = list(await db.scalars(select(OutboxEmail).where(OutboxEmail.dedupe_key == key)))
        [attachment] = await attachments_of(db, key)
    [email] = emails
    assert email.subject == f"Your invoice {invoice.number} from {settings.seller_name}"
    assert "$15.00" in email.body
    assert f"/billing/invoices/{invoice.id}" in email.body
    assert attachment.filename == f"{invoice.number}.pdf"
    assert invoice.number in pdf_pages(attachment.content)[0]
