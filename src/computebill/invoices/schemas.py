from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from computebill.invoices.models import BillingProfile
from computebill.invoices.service import (
    SECTIONS,
    InvoiceDetail,
    ListedInvoice,
    ProfileFields,
    StatementDetail,
)
from computebill.money import decimal_units

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
OptionalText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None


def _blank_as_none(value: str | None) -> str | None:
    return value or None


class BillingProfileIn(BaseModel):
    """Who invoices are addressed to."""

    model_config = ConfigDict(extra="forbid")

    name: Text
    company: OptionalText = None
    address_line1: Text
    address_line2: OptionalText = None
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    postal_code: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True,
            min_length=1,
            max_length=20,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]*$",
        ),
    ]
    country: Annotated[
        str,
        StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$"),
    ] = Field(description="ISO 3166-1 alpha-2 code, e.g. US, DE")
    tax_id: (
        Annotated[
            str,
            StringConstraints(
                strip_whitespace=True, max_length=40, pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9 .\-/]*$"
            ),
        ]
        | None
    ) = None

    _blanks = field_validator("company", "address_line2", "tax_id")(_blank_as_none)

    def fields(self) -> ProfileFields:
        return ProfileFields(**self.model_dump())


class BillingProfileOut(BaseModel):
    name: str
    company: str | None
    address_line1: str
    address_line2: str | None
    city: str
    postal_code: str
    country: str
    tax_id: str | None
    updated_at: datetime

    @classmethod
    def of(cls, profile: BillingProfile) -> BillingProfileOut:
        return cls.model_validate(profile, from_attributes=True)


class InvoiceSummaryOut(BaseModel):
    id: uuid.UUID
    number: str
    issued_at: datetime
    paid_at: datetime
    currency: str
    total_cents: int
    order_id: uuid.UUID | None
    top_up_id: uuid.UUID | None
    pdf_url: str

    @classmethod
    def of(cls, listed: ListedInvoice) -> InvoiceSummaryOut:
        return cls(
            id=uuid.UUID(listed.id),
            number=listed.number,
            issued_at=listed.issued_at,
            paid_at=listed.paid_at,
            currency=listed.currency,
            total_cents=listed.total_cents,
            order_id=uuid.UUID(listed.order_id) if listed.order_id else None,
            top_up_id=uuid.UUID(listed.top_up_id) if listed.top_up_id else None,
            pdf_url=f"/api/v1/invoices/{listed.id}.pdf",
        )


class InvoicePage(BaseModel):
    invoices: list[InvoiceSummaryOut]
    next_cursor: str | None


class PartyOut(BaseModel):
    name: str
    address_lines: list[str]
    email: str | None = None
    tax_id: str | None


class InvoiceLineOut(BaseModel):
    description: str
    quantity: int
    unit_amount_cents: int
    amount_cents: int


class InvoiceOut(BaseModel):
    id: uuid.UUID
    number: str
    issued_at: datetime
    paid_at: datetime
    order_id: uuid.UUID | None
    top_up_id: uuid.UUID | None
    seller: PartyOut
    buyer: PartyOut
    lines: list[InvoiceLineOut]
    currency: str
    subtotal_cents: int
    credits_applied_cents: int
    total_cents: int
    payment_method: str
    payment_intent_id: str | None
    pdf_url: str

    @classmethod
    def of(cls, detail: InvoiceDetail) -> InvoiceOut:
        invoice = detail.invoice
        return cls(
            id=invoice.id,
            number=invoice.number,
            issued_at=invoice.issued_at,
            paid_at=invoice.paid_at,
            order_id=invoice.order_id,
            top_up_id=invoice.top_up_id,
            seller=PartyOut(
                name=invoice.seller_name,
                address_lines=invoice.seller_address.splitlines(),
                tax_id=invoice.seller_tax_id,
            ),
            buyer=PartyOut(
                name=invoice.buyer_name,
                address_lines=invoice.buyer_address.splitlines(),
                email=invoice.buyer_email,
                tax_id=invoice.buyer_tax_id,
            ),
            lines=[
                InvoiceLineOut(
                    description=line.description,
                    quantity=line.quantity,
                    unit_amount_cents=line.unit_amount_cents,
                    amount_cents=line.amount_cents,
                )
                for line in detail.lines
            ],
            currency=invoice.currency,
            subtotal_cents=invoice.subtotal_cents,
            credits_applied_cents=invoice.credits_applied_cents,
            total_cents=invoice.total_cents,
            payment_method=invoice.payment_method,
            payment_intent_id=invoice.payment_intent_id,
            pdf_url=f"/api/v1/invoices/{invoice.id}.pdf",
        )


class StatementSummaryOut(BaseModel):
    id: uuid.UUID
    month: str = Field(description="YYYY-MM, UTC")
    currency: str
    opening_balance_millicents: int
    closing_balance_millicents: int
    entry_count: int
    issued_at: datetime
    pdf_url: str
    csv_url: str


class StatementList(BaseModel):
    statements: list[StatementSummaryOut]


def statement_summary(
    *,
    id: uuid.UUID,
    month: date,
    currency: str,
    opening_balance_millicents: int,
    closing_balance_millicents: int,
    entry_count: int,
    issued_at: datetime,
) -> StatementSummaryOut:
    return StatementSummaryOut(
        id=id,
        month=f"{month:%Y-%m}",
        currency=currency,
        opening_balance_millicents=opening_balance_millicents,
        closing_balance_millicents=closing_balance_millicents,
        entry_count=entry_count,
        issued_at=issued_at,
        pdf_url=f"/api/v1/statements/{id}.pdf",
        csv_url=f"/api/v1/statements/{id}.csv",
    )


class StatementLineOut(BaseModel):
    kind: str
    section: str
    description: str
    entry_count: int
    instance_id: uuid.UUID | None
    seconds: int | None
    rate_millicents_per_hour: int | None
    amount_millicents: int


class StatementOut(StatementSummaryOut):
    movement_millicents: int
    lines: list[StatementLineOut]

    @classmethod
    def of(cls, detail: StatementDetail) -> StatementOut:
        statement = detail.statement
        summary = statement_summary(
            id=statement.id,
            month=statement.month,
            currency=statement.currency,
            opening_balance_millicents=statement.opening_balance_millicents,
            closing_balance_millicents=statement.closing_balance_millicents,
            entry_count=statement.entry_count,
            issued_at=statement.issued_at,
        )
        return cls(
            **summary.model_dump(),
            movement_millicents=statement.movement_millicents,
            lines=[
                StatementLineOut(
                    kind=line.kind,
                    section=SECTIONS.get(line.kind, line.kind),
                    description=line.description,
                    entry_count=line.entry_count,
                    instance_id=line.instance_id,
                    seconds=line.seconds,
                    rate_millicents_per_hour=line.rate_millicents_per_hour,
                    amount_millicents=line.amount_millicents,
                )
                for line in detail.lines
            ],
        )


STATEMENT_CSV_COLUMNS = (
    "section",
    "description",
    "instance_id",
    "entries",
    "seconds",
    "rate_per_hour",
    "amount",
)


def statement_csv(detail: StatementDetail) -> str:
    """The statement as CSV: the opening balance, a row per line, the closing balance; money
    in exact decimal units, so the rows between the balances add up to their difference."""
    statement = detail.statement
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(STATEMENT_CSV_COLUMNS)
    writer.writerow(
        ("Opening balance", "", "", "", "", "", decimal_units(statement.opening_balance_millicents))
    )
    for line in detail.lines:
        rate = line.rate_millicents_per_hour
        writer.writerow(
            (
                SECTIONS.get(line.kind, line.kind),
                line.description,
                line.instance_id or "",
                line.entry_count,
                "" if line.seconds is None else line.seconds,
                "" if rate is None else decimal_units(rate),
                decimal_units(line.amount_millicents),
            )
        )
    writer.writerow(
        ("Closing balance", "", "", "", "", "", decimal_units(statement.closing_balance_millicents))
    )
    return out.getvalue()


def statement_filename(detail: StatementDetail, extension: str) -> str:
    return f"statement-{detail.statement.month:%Y-%m}.{extension}"
