"""The paperwork over HTTP: the billing profile (validated, used by the next invoice), the
invoice list, JSON and PDF, the statements as JSON, PDF and CSV; a token needed, another
customer's a 404; and `computebill statements issue`, which issues a month once."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.config import Settings
from computebill.credits.models import EntryKind
from computebill.db import create_sessionmaker
from computebill.invoices import service
from computebill.invoices.models import Statement
from computebill.invoices.schemas import STATEMENT_CSV_COLUMNS
from tests.credits.ledger import post
from tests.invoices.paperwork import add_paid_top_up, pdf_pages
from tests.support.http import Api
from tests.support.settings import run_cli

PROFILE = {
    "name": "Ada Lovelace",
    "company": "Analytical Engines Ltd",
    "address_line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "gb",
    "tax_id": "GB123456789",
}


async def _customer(api: Api) -> tuple[str, uuid.UUID]:
    signed_up = await api.sign_up(f"paper-{uuid.uuid4().hex[:10]}@example.com")
    return signed_up["access_token"], uuid.UUID(signed_up["user"]["id"])


async def _paid_top_up_invoice(engine: AsyncEngine, settings: Settings, user_id: uuid.UUID) -> str:
    now = datetime.now(UTC)
    async with create_sessionmaker(engine)() as db, db.begin():
        top_up = await add_paid_top_up(db, user_id, 4200, now=now)
        invoice = await service.issue_for_top_up(
            db, top_up, seller=service.Seller.of(settings), payment_method="Visa •••• 4242", now=now
        )
        return str(invoice.id)


async def test_the_billing_profile_is_validated_and_addresses_new_invoices(
    api: Api, engine: AsyncEngine, settings: Settings
) -> None:
    token, user_id = await _customer(api)
    assert (await api.get("/api/v1/account/billing-profile", token)).status_code == 404
    for bad in ({"country": "United Kingdom"}, {"name": " "}, {"postal_code": "<script>"}):
        answer = await api.call("PUT", "/api/v1/account/billing-profile", token, PROFILE | bad)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"]
    saved = await api.call("PUT", "/api/v1/account/billing-profile", token, PROFILE)
    assert saved.status_code == 200, saved.text
    assert saved.json()["country"] == "GB"
    assert (await api.get("/api/v1/account/billing-profile", token)).json() == saved.json()

    invoice_id = await _paid_top_up_invoice(engine, settings, user_id)
    invoice = (await api.get(f"/api/v1/invoices/{invoice_id}", token)).json()
    assert invoice["buyer"] == {
        "name": "Ada Lovelace",
        "address_lines": [
            "Analytical Engines Ltd",
            "12 St James's Square",
            "SW1Y 4JH London",
            "GB",
        ],
        "email": invoice["buyer"]["email"],
        "tax_id": "GB123456789",
    }
    assert invoice["seller"]["name"] == settings.seller_name


async def test_invoices_are_the_callers_own_as_json_and_pdf(
    api: Api, engine: AsyncEngine, settings: Settings
) -> None:
    token, user_id = await _customer(api)
    other_token, _ = await _customer(api)
    ids = [await _paid_top_up_invoice(engine, settings, user_id) for _ in range(3)]

    assert (await api.http.get("/api/v1/invoices")).status_code == 401
    first = (await api.get("/api/v1/invoices?limit=2", token)).json()
    assert [row["id"] for row in first["invoices"]] == ids[::-1][:2]
    rest = (await api.get(f"/api/v1/invoices?limit=2&cursor={first['next_cursor']}", token)).json()
    assert [row["id"] for row in rest["invoices"]] == [ids[0]]
    assert rest["next_cursor"] is None
    assert (await api.get("/api/v1/invoices", other_token)).json()["invoices"] == []

    invoice: dict[str, Any] = (await api.get(f"/api/v1/invoices/{ids[0]}", token)).json()
    assert invoice["total_cents"] == 4200
    assert invoice["lines"] == [
        {
            "description": "Compute credit (prepaid)",
            "quantity": 1,
            "unit_amount_cents": 4200,
            "amount_cents": 4200,
        }
    ]
    pdf = await api.get(f"/api/v1/invoices/{ids[0]}.pdf", token)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    # Drawn again, the same bytes: its dates are the invoice's own.
    assert (await api.get(f"/api/v1/invoices/{ids[0]}.pdf", token)).content == pdf.content
    [page] = pdf_pages(pdf.content)
    for shown in (invoice["number"], "$42.00", "Compute credit (prepaid)", "Visa **** 4242"):
        assert shown in page
    for path in (f"/api/v1/invoices/{ids[0]}", f"/api/v1/invoices/{ids[0]}.pdf"):
        assert (await api.get(path, other_token)).status_code == 404
        assert (await api.http.get(path)).status_code == 401


async def test_statements_as_json_pdf_and_csv_and_the_cli_issues_a_month_once(
    api: Api, engine: AsyncEngine, settings: Settings
) -> None:
    token, user_id = await _customer(api)
    other_token, _ = await _customer(api)
    month = date(2019, 3, 1)  # a month no other test posts in
    sessions = create_sessionmaker(engine)
    async with sessions() as db, db.begin():
        await post(db, user_id, EntryKind.TOP_UP, 10_000_000, now=datetime(2019, 3, 4, tzinfo=UTC))
        await post(db, user_id, EntryKind.USAGE, -1_234_567, now=datetime(2019, 3, 9, tzinfo=UTC))
        await post(db, user_id, EntryKind.GRANT, 500_001, now=datetime(2019, 3, 20, tzinfo=UTC))

    outputs = []
    for _ in range(2):
        status, output = await run_cli(settings, "statements", "issue", "--month", "2019-03")
        assert status == 0, output
        outputs.append(output.strip().splitlines()[-1])
    assert outputs[0].endswith("statements of 2019-03 issued")
    assert not outputs[0].startswith("0 ")
    assert outputs[1] == "0 statements of 2019-03 issued"
    async with sessions() as db:
        assert (
            len(list(await db.scalars(select(Statement).where(Statement.user_id == user_id)))) == 1
        )

    listed = (await api.get("/api/v1/statements", token)).json()["statements"]
    [summary] = [row for row in listed if row["month"] == f"{month:%Y-%m}"]
    assert summary["closing_balance_millicents"] == 10_000_000 - 1_234_567 + 500_001
    statement = (await api.get(f"/api/v1/statements/{summary['id']}", token)).json()
    assert [(line["kind"], line["amount_millicents"]) for line in statement["lines"]] == [
        ("top_up", 10_000_000),
        ("usage", -1_234_567),
        ("grant", 500_001),
    ]
    answer = await api.get(f"/api/v1/statements/{summary['id']}.csv", token)
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert tuple(rows[0]) == STATEMENT_CSV_COLUMNS
    assert [row[-1] for row in rows[1:]] == [
        "0.00000",
        "100.00000",
        "-12.34567",
        "5.00001",
        "92.65434",
    ]
    pdf = await api.get(f"/api/v1/statements/{summary['id']}.pdf", token)
    assert pdf.headers["content-type"] == "application/pdf"
    [page] = pdf_pages(pdf.content)
    # Each figure to the cent: 100.00 - 12.35 + 5.00 = 92.65, as printed; nothing to round.
    for shown in ("March 2019", "$100.00", "-$12.35", "$5.00", "$92.65", "Page 1 of 1"):
        assert shown in page
    assert "Rounding" not in page
    for suffix in ("", ".pdf", ".csv"):
        path = f"/api/v1/statements/{summary['id']}{suffix}"
        assert (await api.get(path, other_token)).status_code == 404
        assert (await api.http.get(path)).status_code == 401


async def test_the_cli_refuses_a_month_that_has_not_ended_or_is_not_one(
    settings: Settings,
) -> None:
    status, output = await run_cli(settings, "statements", "issue", "--month", "2999-01")
    assert status == 1
    assert "2999-01 has not ended yet" in output
    status, output = await run_cli(settings, "statements", "issue", "--month", "March")
    assert status == 2
    assert "is not a month written YYYY-MM" in output
