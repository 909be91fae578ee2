"""Invoice numbers: gap-free and unique per year among committed invoices, however many
fulfilments issue at once and however many of them roll back; a new year starts at 000001."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.config import Settings
from computebill.db import create_sessionmaker
from computebill.invoices import service
from computebill.invoices.models import Invoice, InvoiceNumberCounter
from tests.credits.ledger import add_user
from tests.invoices.paperwork import add_paid_top_up

FULFILMENTS = 20


class RolledBack(Exception):
    """What makes a fulfilment roll back after its invoice was issued."""


def _a_year_of_its_own() -> int:
    """A year no other test issues invoices in (the test database is shared by the run)."""
    return 2100 + secrets.randbelow(7000)


async def test_concurrent_fulfilments_number_without_gaps_or_repeats(
    engine: AsyncEngine, settings: Settings
) -> None:
    sessions = create_sessionmaker(engine)
    now = datetime(_a_year_of_its_own(), 6, 1, 12, tzinfo=UTC)
    async with sessions() as db, db.begin():
        user_id = await add_user(db)
        top_ups = [
            await add_paid_top_up(db, user_id, 1000 + i, now=now) for i in range(FULFILMENTS)
        ]
    rolled_back = {i for i in range(FULFILMENTS) if i % 3 == 1}
    started = asyncio.Event()

    async def fulfil(index: int) -> str | None:
        try:
            async with sessions() as db, db.begin():
                await started.wait()
                invoice = await service.issue_for_top_up(
                    db,
                    top_ups[index],
                    seller=service.Seller.of(settings),
                    payment_method="Card",
                    now=now,
                )
                await asyncio.sleep(0.01)  # hold the counter while others queue on it
                if index in rolled_back:
                    raise RolledBack
                return invoice.number
        except RolledBack:
            return None

    tasks = [asyncio.create_task(fulfil(i)) for i in range(FULFILMENTS)]
    started.set()
    numbers = [number for number in await asyncio.gather(*tasks) if number is not None]

    committed = FULFILMENTS - len(rolled_back)
    expected = [service.invoice_number(now.year, n) for n in range(1, committed + 1)]
    assert sorted(numbers) == expected
    async with sessions() as db:
        stored = await db.scalars(
            select(Invoice.number).where(Invoice.year == now.year).order_by(Invoice.sequence)
        )
        assert list(stored) == expected
        counter = await db.scalar(
            select(InvoiceNumberCounter.last_number).where(InvoiceNumberCounter.year == now.year)
        )
        assert counter == committed


async def test_the_first_invoice_of_a_year_is_number_one(
    engine: AsyncEngine, settings: Settings
) -> None:
    sessions = create_sessionmaker(engine)
    year = _a_year_of_its_own()
    new_years_eve = datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC)
    new_year = datetime(year + 1, 1, 1, 0, 0, 0, tzinfo=UTC)
    async with sessions() as db, db.begin():
        user_id = await add_user(db)
        numbers = []
        for when in (new_years_eve, new_years_eve, new_year, new_year):
            top_up = await add_paid_top_up(db, user_id, 1000, now=when)
            invoice = await service.issue_for_top_up(
                db, top_up, seller=service.Seller.of(settings), payment_method="Card", now=when
            )
            numbers.append(invoice.number)
    assert numbers == [
        f"CB-{year}-000001",
        f"CB-{year}-000002",
        f"CB-{year + 1}-000001",
        f"CB-{year + 1}-000002",
    ]
