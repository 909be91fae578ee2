from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from computebill.db import Base


class RunwayAlert(Base):
    """Whether an account's runway alert at one threshold is armed (docs/architecture.md §4,
    runway alerts). Sending the alert disarms it and counts it in `alerts_sent`, which keys the
    e-mail (`runway:<user>:<threshold seconds>:<alerts_sent>`); a runway seen above the threshold
    again re-arms it. No row: armed, never sent."""

    __tablename__ = "credit_runway_alerts"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    threshold_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    armed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    alerts_sent: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # When it was last sent or re-armed: a check that read the runway before then re-arms nothing.
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
