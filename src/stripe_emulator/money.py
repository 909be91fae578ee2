"""Amounts for people: integer minor units shown in major units, never through floats."""

from __future__ import annotations

# Currencies whose minor unit is the major unit (Stripe's list, abridged to common ones).
ZERO_DECIMAL_CURRENCIES = {"bif", "clp", "jpy", "krw", "pyg", "vnd", "xaf", "xof"}


def format_amount(amount: int, currency: str) -> str:
    code = currency.upper()
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return f"{code} {amount:,}"
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 100)
    return f"{code} {sign}{major:,}.{minor:02d}"
