"""Money for people to read: integer minor units in, text out. No floats."""

from __future__ import annotations

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def format_money(cents: int, currency: str = "usd") -> str:
    """`266720, "usd"` → `$2,667.20`; unknown currencies get their code: `12.00 CHF`."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    amount = f"{whole:,}.{part:02d}"
    symbol = SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency.upper()}"


def format_millicents(millicents: int, currency: str = "usd") -> str:
    """Sub-cent rates as people write them: `5000` → `$0.05`, `100` → `$0.001`."""
    whole, rest = divmod(abs(millicents), 100_000)  # 100,000 millicents to the dollar
    fraction = f"{rest:05d}".rstrip("0").ljust(2, "0")
    symbol = SYMBOLS.get(currency.lower())
    sign = "-" if millicents < 0 else ""
    amount = f"{whole:,}.{fraction}"
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency.upper()}"
