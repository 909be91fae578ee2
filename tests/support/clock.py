"""A clock tests move forward instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class MovableClock:
    """A clock tests move forward instead of sleeping."""

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)
