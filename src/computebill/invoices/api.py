"""The caller's paperwork: the billing profile, invoices and monthly statements, as JSON, PDF
and CSV (docs/architecture.md §8). Another customer's invoice or statement is a 404."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.dependencies import BillingWriteAccess, ReadAccess
from computebill.deps import ReadConnectionDep, SessionDep
from computebill.errors import NotFound
from computebill.invoices import service
from computebill.invoices.pdf import invoice_pdf, statement_pdf
from computebill.invoices.schemas import (
    BillingProfileIn,
    BillingProfileOut,
    InvoiceOut,
    InvoicePage,
    InvoiceSummaryOut,
    StatementList,
    StatementOut,
    statement_csv,
    statement_filename,
    statement_summary,
)
from computebill.paging import PageCursor, PageLimit

router = APIRouter(prefix="/api/v1", tags=["invoices"])

PDF = "application/pdf"
CSV = "text/csv"


def _attachment(content: bytes | str, media_type: str, filename: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


async def invoice_pdf_file(db: AsyncSession, invoice_id: uuid.UUID, user_id: uuid.UUID) -> Response:
    """The user's invoice as a PDF download (the API's and the page's)."""
    detail = await service.get_invoice(db, invoice_id, user_id=user_id)
    return _attachment(invoice_pdf(detail), PDF, f"{detail.invoice.number}.pdf")


async def statement_file(
    db: AsyncSession, statement_id: uuid.UUID, user_id: uuid.UUID, extension: str
) -> Response:
    """The user's statement as a PDF or CSV download (the API's and the page's)."""
    detail = await service.get_statement(db, statement_id, user_id=user_id)
    filename = statement_filename(detail, extension)
    if extension == "csv":
        return _attachment(statement_csv(detail), CSV, filename)
    return _attachment(statement_pdf(detail), PDF, filename)


@router.get("/account/billing-profile", response_model=BillingProfileOut)
async def get_billing_profile(principal: ReadAccess, db: SessionDep) -> BillingProfileOut:
    """Who the caller's invoices are addressed to; 404 until it is set."""
    profile = await service.billing_profile(db, principal.user_id)
    if profile is None:
        raise NotFound("No billing profile yet: PUT one.")
    return BillingProfileOut.of(profile)


@router.put("/account/billing-profile", response_model=BillingProfileOut)
async def put_billing_profile(
    body: BillingProfileIn, principal: BillingWriteAccess, db: SessionDep
) -> BillingProfileOut:
    """Set the caller's billing profile; invoices issued from now on carry it (those issued
    before keep what they had)."""
    profile = await service.save_billing_profile(db, principal.user_id, body.fields())
    return BillingProfileOut.of(profile)


@router.get("/invoices", response_model=InvoicePage)
async def list_invoices(
    principal: ReadAccess,
    db: ReadConnectionDep,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> InvoicePage:
    """The caller's invoices, newest first, a page at a time."""
    page, next_cursor = await service.invoices_page(
        db, principal.user_id, cursor=cursor, limit=limit
    )
    return InvoicePage(
        invoices=[InvoiceSummaryOut.of(listed) for listed in page], next_cursor=next_cursor
    )


@router.get("/invoices/{invoice_id}.pdf", responses={200: {"content": {PDF: {}}}})
async def get_invoice_pdf(invoice_id: uuid.UUID, principal: ReadAccess, db: SessionDep) -> Response:
    """The invoice as a PDF."""
    return await invoice_pdf_file(db, invoice_id, principal.user_id)


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
async def get_invoice(invoice_id: uuid.UUID, principal: ReadAccess, db: SessionDep) -> InvoiceOut:
    """The invoice: seller, buyer, lines and totals as issued."""
    return InvoiceOut.of(await service.get_invoice(db, invoice_id, user_id=principal.user_id))


@router.get("/statements", response_model=StatementList)
async def list_statements(principal: ReadAccess, db: ReadConnectionDep) -> StatementList:
    """The caller's monthly statements, newest month first."""
    rows = await service.list_statements(db, principal.user_id)
    return StatementList(statements=[statement_summary(**row._asdict()) for row in rows])


@router.get("/statements/{statement_id}.pdf", responses={200: {"content": {PDF: {}}}})
async def get_statement_pdf(
    statement_id: uuid.UUID, principal: ReadAccess, db: SessionDep
) -> Response:
    """The statement as a PDF, at cent precision."""
    return await statement_file(db, statement_id, principal.user_id, "pdf")


@router.get("/statements/{statement_id}.csv", responses={200: {"content": {CSV: {}}}})
async def get_statement_csv(
    statement_id: uuid.UUID, principal: ReadAccess, db: SessionDep
) -> Response:
    """The statement as CSV, to the millicent."""
    return await statement_file(db, statement_id, principal.user_id, "csv")


@router.get("/statements/{statement_id}", response_model=StatementOut)
async def get_statement(
    statement_id: uuid.UUID, principal: ReadAccess, db: SessionDep
) -> StatementOut:
    """The statement: opening balance, the month's entries grouped, closing balance."""
    return StatementOut.of(await service.get_statement(db, statement_id, user_id=principal.user_id))
