"""Money: integer minor units, rounded once, and written for people. No floats.

`format_money` is the one way an amount is written, on pages (the `money` filter), in receipts
and in e-mail text alike: `$1,234.56`, or the code after the amount where a currency has no
symbol here (`1,234.56 CHF`). A balance kept in millicents is shown in cents through
`cents_rounded_down`.
"""

from __future__ import annotations

import re

# An amount as people type it in a form: whole units with at most two decimals, thousands
# separated by commas or not, after an optional symbol ("40", "12.5", "$1,000.00").
_TYPED_AMOUNT = re.compile(r"\$?(\d{1,3}(?:,\d{3})+|\d{1,9})(?:\.(\d{1,2}))?")
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}
MILLICENTS_PER_CENT = 1000
CENTS_PER_UNIT = 100  # to the dollar, euro or pound
MILLICENTS_PER_UNIT = MILLICENTS_PER_CENT * CENTS_PER_UNIT


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, halves away from zero."""
    if numerator < 0:
        return -round_half_up(-numerator, denominator)
    return (2 * numerator + denominator) // (2 * denominator)


def cents_rounded_down(millicents: int) -> int:
    """Millicents as whole cents, rounded down: a balance shown in cents never shows money the
    customer does not have, and never less debt than they owe (`1999` → `1`, `-1999` → `-2`)."""
    return millicents // MILLICENTS_PER_CENT


def _written(*, negative: bool, whole: int, fraction: str, currency: str) -> str:
    sign = "-" if negative else ""
    amount = f"{whole:,}.{fraction}"
    symbol = SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency.upper()}"


def format_money(cents: int, currency: str = "usd") -> str:
    """`266720, "usd"` → `$2,667.20`; `-1999` → `-$19.99`; `1200, "chf"` → `12.00 CHF`."""
    whole, part = divmod(abs(cents), CENTS_PER_UNIT)
    return _written(negative=cents < 0, whole=whole, fraction=f"{part:02d}", currency=currency)


def format_millicents(millicents: int, currency: str = "usd") -> str:
    """Sub-cent rates as people write them: `5000` → `$0.05`, `100` → `$0.001`."""
    whole, rest = divmod(abs(millicents), CENTS_PER_UNIT * MILLICENTS_PER_CENT)
    fraction = f"{rest:05d}".rstrip("0").ljust(2, "0")
    return _written(negative=millicents < 0, whole=whole, fraction=fraction, currency=currency)


def decimal_units(millicents: int) -> str:
    """Millicents as exact dollars (or euros…) written in decimals, from integers alone, for
    files that are read by programs (CSV): `1234567` → `12.34567`, `-5` → `-0.00005`."""
    whole, rest = divmod(abs(millicents), MILLICENTS_PER_UNIT)
    return f"{'-' if millicents < 0 else ''}{whole}.{rest:05d}"


def cents_from_text(typed: str) -> int | None:
    """An amount typed in a form, in cents: `"12.5"` → `1250`, `"$1,000"` → `100000`; None when
    it is not an amount (`"12.345"`, `"-5"`, `"ten"`)."""
    match = _TYPED_AMOUNT.fullmatch(typed.strip())
    if match is None:
        return None
    whole, fraction = match.group(1).replace(",", ""), (match.group(2) or "").ljust(2, "0")
    return int(whole) * CENTS_PER_UNIT + int(fraction)
