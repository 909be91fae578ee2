"""The one money formatter (pages, receipts, e-mail text), the one rounding rule of prices, how
a balance is shown in cents, and how an amount typed in a form is read."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.money import (
    cents_from_text,
    cents_rounded_down,
    format_millicents,
    format_money,
    round_half_up,
)
from computebill.orders.service import receipt
from tests.support.orders import add_paid_order


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [
        (266720, "usd", "$2,667.20"),
        (123456, "usd", "$1,234.56"),
        (123456789012, "usd", "$1,234,567,890.12"),
        (100000, "usd", "$1,000.00"),
        (99999, "usd", "$999.99"),
        (5, "usd", "$0.05"),
        (0, "usd", "$0.00"),
        (0, "eur", "€0.00"),
        (-1999, "usd", "-$19.99"),
        (-5, "usd", "-$0.05"),
        (-123456, "usd", "-$1,234.56"),
        (123456, "eur", "€1,234.56"),
        (123456, "gbp", "£1,234.56"),
        (123456, "USD", "$1,234.56"),
        (1200, "chf", "12.00 CHF"),
        (123456, "cad", "1,234.56 CAD"),
        (-123456, "chf", "-1,234.56 CHF"),
    ],
)
def test_money_reads_as_people_write_it(cents: int, currency: str, text: str) -> None:
    assert format_money(cents, currency) == text


def test_dollars_are_the_default_currency() -> None:
    assert format_money(123456) == "$1,234.56"


@pytest.mark.parametrize(
    ("millicents", "currency", "text"),
    [
        (5000, "usd", "$0.05"),
        (100, "usd", "$0.001"),
        (249000, "usd", "$2.49"),
        (12345, "usd", "$0.12345"),
        (2672000, "usd", "$26.72"),
        (1, "usd", "$0.00001"),
        (0, "usd", "$0.00"),
        (123456700000, "usd", "$1,234,567.00"),
        (-5000, "usd", "-$0.05"),
        (100, "eur", "€0.001"),
        (100, "chf", "0.001 CHF"),
    ],
)
def test_sub_cent_rates_keep_their_precision(millicents: int, currency: str, text: str) -> None:
    assert format_millicents(millicents, currency) == text


@given(st.integers(-(10**12), 10**12), st.sampled_from(["usd", "eur", "chf"]))
def test_whole_cents_read_the_same_as_a_rate_or_an_amount(cents: int, currency: str) -> None:
    assert format_millicents(cents * 1000, currency) == format_money(cents, currency)


@given(st.integers(0, 10**12), st.integers(1, 10**6))
def test_round_half_up_rounds_halves_up(numerator: int, denominator: int) -> None:
    exact = Fraction(numerator, denominator)
    result = round_half_up(numerator, denominator)
    assert abs(Fraction(result) - exact) <= Fraction(1, 2)
    if exact - int(exact) == Fraction(1, 2):
        assert result == int(exact) + 1


@pytest.mark.parametrize(
    ("numerator", "denominator", "rounded"),
    [(1500, 1000, 2), (1499, 1000, 1), (2500, 1000, 3), (-1500, 1000, -2), (-1499, 1000, -1)],
)
def test_halves_round_away_from_zero(numerator: int, denominator: int, rounded: int) -> None:
    assert round_half_up(numerator, denominator) == rounded


@pytest.mark.parametrize(
    ("millicents", "cents"),
    [
        (0, 0),
        (999, 0),
        (1000, 1),
        (1999, 1),
        (2_499_999, 2_499),
        (-1, -1),
        (-999, -1),
        (-1000, -1),
        (-1999, -2),
        (-2_500_001, -2_501),
    ],
)
def test_a_balance_is_shown_in_cents_rounded_down(millicents: int, cents: int) -> None:
    assert cents_rounded_down(millicents) == cents


@given(st.integers(-(10**15), 10**15))
def test_a_balance_shown_in_cents_never_shows_more_than_there_is(millicents: int) -> None:
    """Never more money than the customer has (nor less debt than they owe); off by under 1 ¢."""
    shown = cents_rounded_down(millicents) * 1000
    assert shown <= millicents
    assert millicents - shown < 1000


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        ("40", 4_000),
        ("12.5", 1_250),
        ("12.50", 1_250),
        (" $1,000.05 ", 100_005),
        ("0.01", 1),
        ("12.345", None),
        ("-5", None),
        ("1,00", None),
        ("ten", None),
        ("", None),
        ("1e3", None),
    ],
)
def test_an_amount_typed_in_a_form_is_read_exactly(typed: str, cents: int | None) -> None:
    assert cents_from_text(typed) == cents


@given(st.integers(0, 10**11))
def test_an_amount_as_written_reads_back(cents: int) -> None:
    assert cents_from_text(format_money(cents)) == cents


async def test_receipts_write_money_as_the_pages_do(db_session: AsyncSession, email: str) -> None:
    user = User(email=email, password_changed_at=datetime.now(UTC))
    db_session.add(user)
    await db_session.flush()
    order = await add_paid_order(
        db_session, user.id, [("nvidia-h100", 1, 200)], now=datetime.now(UTC)
    )
    text = (await receipt(db_session, order.id)).body
    assert order.total_cents == 133600
    assert "200 h · us-east-1 · Machines: 1 · $1,336.00\n" in text
    assert "Total: $1,336.00\n" in text
    assert "USD" not in text
