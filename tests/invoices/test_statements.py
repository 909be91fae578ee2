"""Monthly statements: for any postings across months, each month closes at its opening plus its
entries and opens at the month before's close; usage is grouped per instance with the seconds
charged in the month; issuing is idempotent and the statements cannot be changed; the PDF adds
up in cents and numbers its pages."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.config import Settings
from computebill.credits.models import EntryKind
from computebill.credits.service import balance
from computebill.instances import metering
from computebill.invoices import service
from computebill.invoices.models import Statement, StatementLine
from computebill.invoices.pdf import statement_pdf
from computebill.invoices.schemas import STATEMENT_CSV_COLUMNS, statement_csv
from computebill.money import format_money
from tests.credits.ledger import add_user, post
from tests.instances.metering import add_metered
from tests.invoices.paperwork import pdf_pages

MONTHS = [date(2025, month, 1) for month in (1, 2, 3, 4)]
RATE = 7_654_321  # millicents an hour

# A posting: which month, a moment in it, its kind, and its size in millicents.
KINDS = [EntryKind.TOP_UP, EntryKind.USAGE, EntryKind.GRANT, EntryKind.EXPIRY, EntryKind.ADJUSTMENT]
postings = st.lists(
    st.tuples(
        st.integers(0, len(MONTHS) - 1),
        st.integers(0, 27 * 86400 - 1),
        st.sampled_from(KINDS),
        st.integers(1, 10_000_000),
        st.booleans(),  # an adjustment's direction
    ),
    max_size=25,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(postings=postings)
async def test_each_month_closes_at_its_opening_plus_its_entries(
    db_session: AsyncSession,
    postings: list[tuple[int, int, EntryKind, int, bool]],
) -> None:
    user_id = await add_user(db_session)
    for index, second, kind, size, credit in sorted(postings, key=lambda p: (p[0], p[1])):
        sign = -1 if kind in (EntryKind.USAGE, EntryKind.EXPIRY) else 1
        if kind is EntryKind.ADJUSTMENT and not credit:
            sign = -1
        moment = datetime(2025, index + 1, 1, tzinfo=UTC) + timedelta(seconds=second)
        await post(
            db_session,
            user_id,
            kind,
            sign * size,
            now=moment,
            reason="test" if kind is EntryKind.ADJUSTMENT else None,
        )
    opening = 0
    for month in MONTHS:
        figures = await service.month_figures(db_session, user_id, month)
        assert figures.opening_millicents == opening
        assert figures.closing_millicents == figures.opening_millicents + sum(
            line.amount_millicents for line in figures.lines
        )
        in_month = [p for p in postings if MONTHS[p[0]] == month]
        assert figures.entry_count == len(in_month)
        opening = figures.closing_millicents
    assert opening == await balance(db_session, user_id)


async def test_usage_is_grouped_per_instance_with_the_seconds_of_the_month(
    db_session: AsyncSession, settings: Settings
) -> None:
    user_id = await add_user(db_session)
    await post(
        db_session, user_id, EntryKind.TOP_UP, 500_000_000, now=datetime(2025, 1, 5, tzinfo=UTC)
    )
    start = datetime(2025, 1, 31, 23, 0, tzinfo=UTC)
    instance = await add_metered(db_session, user_id, rate=RATE, started_at=start)
    for seconds in (600, 1800, 3620):  # the last pass runs 20 s into February
        await metering.settle(db_session, [instance.id], now=start + timedelta(seconds=seconds))

    now = datetime(2025, 3, 1, 0, 10, tzinfo=UTC)
    january = await service.issue_statement(
        db_session, user_id, MONTHS[0], seller=service.Seller.of(settings), now=now
    )
    february = await service.issue_statement(
        db_session, user_id, MONTHS[1], seller=service.Seller.of(settings), now=now
    )
    assert january is not None
    assert february is not None
    jan = await service.get_statement(db_session, january.id, user_id=user_id)
    feb = await service.get_statement(db_session, february.id, user_id=user_id)

    [top_up, jan_usage] = jan.lines
    assert (top_up.kind, top_up.amount_millicents) == ("top_up", 500_000_000)
    assert (jan_usage.kind, jan_usage.instance_id, jan_usage.entry_count) == (
        "usage",
        instance.id,
        2,
    )
    assert jan_usage.seconds == 1800
    assert jan_usage.rate_millicents_per_hour == RATE
    assert jan_usage.amount_millicents == -metering.owed_millicents(RATE, 1800)
    assert instance.name in jan_usage.description
    [feb_usage] = feb.lines
    assert feb_usage.seconds == 1820
    assert feb_usage.amount_millicents == -(
        metering.owed_millicents(RATE, 3620) - metering.owed_millicents(RATE, 1800)
    )
    assert february.opening_balance_millicents == january.closing_balance_millicents
    assert february.closing_balance_millicents == await balance(db_session, user_id)

    rows = list(csv.reader(io.StringIO(statement_csv(jan))))
    assert tuple(rows[0]) == STATEMENT_CSV_COLUMNS
    assert rows[1][0] == "Opening balance"
    assert rows[-1][0] == "Closing balance"
    amounts = [round(float(row[-1]) * 100_000) for row in rows[1:]]  # exact to the millicent
    assert amounts[0] + sum(amounts[1:-1]) == amounts[-1] == january.closing_balance_millicents
    assert rows[3][4] == "1800"

    [page] = pdf_pages(statement_pdf(jan))
    printed = service.printed(jan)
    assert "January 2025" in page
    assert format_money(printed.closing_cents) in page
    assert "0h 30m 00s" in page
    assert (
        printed.opening_cents + sum(line.cents for line in printed.lines) + (printed.rounding_cents)
        == printed.closing_cents
    )
    assert "Page 1 of 1" in page


async def test_a_long_statement_runs_onto_numbered_pages(
    db_session: AsyncSession, settings: Settings
) -> None:
    user_id = await add_user(db_session)
    await post(db_session, user_id, EntryKind.TOP_UP, 10**10, now=datetime(2025, 3, 1, tzinfo=UTC))
    start = datetime(2025, 3, 2, tzinfo=UTC)
    instances = [
        await add_metered(db_session, user_id, rate=RATE + i, started_at=start) for i in range(90)
    ]
    await metering.settle(db_session, [i.id for i in instances], now=start + timedelta(hours=2))
    statement = await service.issue_statement(
        db_session,
        user_id,
        MONTHS[2],
        seller=service.Seller.of(settings),
        now=datetime(2025, 4, 1, 0, 10, tzinfo=UTC),
    )
    assert statement is not None
    detail = await service.get_statement(db_session, statement.id, user_id=user_id)
    assert len(detail.lines) == 91
    pages = pdf_pages(statement_pdf(detail))
    assert len(pages) == 3
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of 3" in page
        assert "Description" in page  # the table's header on every page
    text = "\n".join(pages)
    assert all(instance.name in text for instance in instances)
    assert format_money(service.printed(detail).closing_cents) in pages[-1]


async def test_issuing_a_month_is_idempotent_and_statements_cannot_change(
    db_session: AsyncSession, settings: Settings
) -> None:
    month = date(2031, 5, 1)
    quiet = await add_user(db_session)  # a zero balance and nothing in May: no statement
    await post(db_session, quiet, EntryKind.TOP_UP, 1000, now=datetime(2031, 4, 2, tzinfo=UTC))
    await post(db_session, quiet, EntryKind.USAGE, -1000, now=datetime(2031, 4, 3, tzinfo=UTC))
    holding = await add_user(db_session)  # a balance, nothing in May: a statement of no lines
    await post(db_session, holding, EntryKind.TOP_UP, 7000, now=datetime(2031, 4, 2, tzinfo=UTC))
    active = await add_user(db_session)
    await post(db_session, active, EntryKind.TOP_UP, 9000, now=datetime(2031, 5, 2, tzinfo=UTC))
    await post(db_session, active, EntryKind.TOP_UP, 1000, now=datetime(2031, 6, 1, tzinfo=UTC))

    now = datetime(2031, 6, 1, 0, 10, tzinfo=UTC)
    assert (
        await service.issue_statements(
            db_session, month, seller=service.Seller.of(settings), now=now
        )
        >= 2
    )
    assert (
        await service.issue_statements(
            db_session, month, seller=service.Seller.of(settings), now=now
        )
        == 0
    )
    issued = {
        row.user_id: row
        for row in await db_session.scalars(select(Statement).where(Statement.month == month))
    }
    assert quiet not in issued
    assert (
        issued[holding].opening_balance_millicents,
        issued[holding].closing_balance_millicents,
    ) == (7000, 7000)
    assert issued[holding].entry_count == 0
    assert (
        issued[active].opening_balance_millicents,
        issued[active].closing_balance_millicents,
    ) == (0, 9000)
    assert issued[active].seller_name == settings.seller_name

    for statement in (
        delete(StatementLine).where(StatementLine.statement_id == issued[active].id),
        delete(Statement).where(Statement.id == issued[active].id),
    ):
        with pytest.raises(DBAPIError, match="issued paperwork"):
            async with db_session.begin_nested():
                await db_session.execute(statement)


def test_months_and_their_bounds() -> None:
    assert service.previous_month(datetime(2026, 1, 1, 0, 10, tzinfo=UTC)) == date(2025, 12, 1)
    assert service.previous_month(datetime(2026, 7, 31, 23, tzinfo=UTC)) == date(2026, 6, 1)
    assert service.month_bounds(date(2025, 12, 1)) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert re.fullmatch(r"CB-2026-000042", service.invoice_number(2026, 42))


def test_printed_lines_add_up_to_the_printed_balances() -> None:
    """Three charges of 0.4 ¢ print as $0.00 each, yet take a cent off the balance: the
    difference is a line of its own, so what is printed adds up."""
    lines = [
        StatementLine(kind="usage", description=f"gpu-{n}", entry_count=1, amount_millicents=-400)
        for n in range(3)
    ]
    statement = Statement(
        opening_balance_millicents=10_000,
        movement_millicents=-1_200,
        closing_balance_millicents=8_800,
    )
    printed = service.printed(service.StatementDetail(statement, lines))
    assert (printed.opening_cents, printed.closing_cents) == (10, 9)
    assert [line.cents for line in printed.lines] == [0, 0, 0]
    assert printed.rounding_cents == -1
    assert printed.opening_cents + printed.rounding_cents == printed.closing_cents
