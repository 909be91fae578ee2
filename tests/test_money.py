from __future__ import annotations

import pytest

from computebill.money import format_millicents, format_money


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [
        (266720, "usd", "$2,667.20"),
        (5, "usd", "$0.05"),
        (0, "eur", "€0.00"),
        (-1999, "usd", "-$19.99"),
        (1200, "chf", "12.00 CHF"),
    ],
)
def test_money_reads_as_people_write_it(cents: int, currency: str, text: str) -> None:
    assert format_money(cents, currency) == text


@pytest.mark.parametrize(
    ("millicents", "text"),
    [
        (5000, "$0.05"),
        (100, "$0.001"),
        (249000, "$2.49"),
        (12345, "$0.12345"),
        (2672000, "$26.72"),
        (1, "$0.00001"),
    ],
)
def test_sub_cent_rates_keep_their_precision(millicents: int, text: str) -> None:
    assert format_millicents(millicents) == text
