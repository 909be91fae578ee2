"""Paperwork on the site: the billing page lists the customer's invoices and statements, an
invoice is a page and a PDF, a statement a PDF and a CSV, none of them another customer's; the
billing profile's form refuses bad fields beside them and saves good ones."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.auth.models import User
from computebill.config import Settings
from computebill.credits.models import EntryKind
from computebill.db import create_sessionmaker
from computebill.invoices import service
from tests.credits.ledger import post
from tests.invoices.paperwork import add_paid_top_up, pdf_pages
from tests.support.markup import elements, the
from tests.support.pages import Browser


async def signed_up(browser: Browser, email: str, engine: AsyncEngine) -> uuid.UUID:
    await browser.sign_up(email)
    async with create_sessionmaker(engine)() as db:
        user_id = await db.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


async def _paperwork(
    engine: AsyncEngine, settings: Settings, user_id: uuid.UUID
) -> tuple[str, str]:
    """An invoice and a statement of the user's (committed): their ids."""
    now = datetime.now(UTC)
    async with create_sessionmaker(engine)() as db, db.begin():
        top_up = await add_paid_top_up(db, user_id, 5000, now=now)
        invoice = await service.issue_for_top_up(
            db, top_up, seller=service.Seller.of(settings), payment_method="Visa •••• 4242", now=now
        )
        await post(db, user_id, EntryKind.TOP_UP, 5_000_000, now=datetime(2020, 2, 3, tzinfo=UTC))
        statement = await service.issue_statement(
            db, user_id, date(2020, 2, 1), seller=service.Seller.of(settings), now=now
        )
        assert statement is not None
        return str(invoice.id), str(statement.id)


async def test_the_billing_page_lists_invoices_and_statements_for_their_owner_only(
    browser: Browser, other_browser: Browser, engine: AsyncEngine, settings: Settings
) -> None:
    user_id = await signed_up(browser, f"paper-{uuid.uuid4().hex[:8]}@example.com", engine)
    await signed_up(other_browser, f"other-{uuid.uuid4().hex[:8]}@example.com", engine)
    invoice_id, statement_id = await _paperwork(engine, settings, user_id)

    billing = (await browser.page("/billing")).text
    [row] = elements(billing, "data-invoice")
    number = row.attrs["data-invoice"]
    assert number is not None
    assert number.startswith("CB-")
    assert "$50.00" in row.text
    [month] = elements(billing, "data-statement")
    assert month.attrs["data-statement"] == "2020-02"
    assert "$50.00" in month.text

    page = await browser.page(f"/billing/invoices/{invoice_id}")
    assert page.status_code == 200
    assert the(page.text, "data-invoice-number").text == number
    assert the(page.text, "data-invoice-total").text == "$50.00"
    assert "Visa •••• 4242" in page.text
    pdf = await browser.page(f"/billing/invoices/{invoice_id}.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert number in pdf_pages(pdf.content)[0]
    statement_pdf = await browser.page(f"/billing/statements/{statement_id}.pdf")
    assert "February 2020" in pdf_pages(statement_pdf.content)[0]
    statement_csv = await browser.page(f"/billing/statements/{statement_id}.csv")
    assert statement_csv.headers["content-type"].startswith("text/csv")
    assert statement_csv.text.splitlines()[-1].endswith("50.00000")

    listed = (await browser.page("/billing/invoices")).text
    assert [row.attrs["data-invoice"] for row in elements(listed, "data-invoice")] == [number]

    other = (await other_browser.page("/billing")).text
    assert elements(other, "data-invoice") == []
    assert elements((await other_browser.page("/billing/invoices")).text, "data-invoice") == []
    for path in (
        f"/billing/invoices/{invoice_id}",
        f"/billing/invoices/{invoice_id}.pdf",
        f"/billing/statements/{statement_id}.pdf",
        f"/billing/statements/{statement_id}.csv",
    ):
        assert (await other_browser.page(path)).status_code == 404


async def test_the_billing_profile_form_refuses_bad_fields_and_saves_good_ones(
    browser: Browser, engine: AsyncEngine
) -> None:
    await signed_up(browser, f"profile-{uuid.uuid4().hex[:8]}@example.com", engine)
    account = (await browser.page("/account")).text
    assert the(account, "data-billing-profile-link").attrs["href"] == "/account/billing-profile"
    good = {
        "name": "Grace Hopper",
        "company": "",
        "address_line1": "1 Navy Yard",
        "address_line2": "",
        "city": "Arlington",
        "postal_code": "22202",
        "country": "us",
        "tax_id": "",
    }
    refused = await browser.submit("/account/billing-profile", good | {"country": "USA"})
    assert refused.status_code == 422
    assert 'id="error-country"' in refused.text
    assert 'value="Grace Hopper"' in refused.text  # what was typed stays
    saved = await browser.submit("/account/billing-profile", good)
    assert saved.status_code == 303
    form = (await browser.page(saved.headers["location"])).text
    assert "Your billing profile is saved." in form
    assert 'value="US"' in form
    # The account page's card shows it (it loads the summary).
    assert the(account, "data-billing-profile-summary").attrs["hx-get"] == (
        "/account/billing-profile/summary"
    )
    summary = (await browser.page("/account/billing-profile/summary")).text
    assert the(summary, "data-billing-profile-address").text == (
        "Grace Hopper 1 Navy Yard 22202 Arlington US"
    )
