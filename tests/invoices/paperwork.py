"""What the paperwork tests share: a PDF's text, and top-ups paid without Stripe (for the
numbering tests, which need many of them at once)."""

from __future__ import annotations

import io
import uuid
from datetime import datetime

from pypdf import PdfReader
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.credits.models import CreditTopUp, TopUpStatus


def pdf_pages(content: bytes) -> list[str]:
    """Each page's text, as a PDF reader extracts it."""
    assert content.startswith(b"%PDF-")
    return [page.extract_text() for page in PdfReader(io.BytesIO(content)).pages]


async def add_paid_top_up(
    db: AsyncSession, user_id: uuid.UUID, amount_cents: int, *, now: datetime
) -> CreditTopUp:
    """A top-up as fulfilment leaves it, paid (flushed, not committed)."""
    top_up = CreditTopUp(
        user_id=user_id,
        status=TopUpStatus.PAID,
        amount_cents=amount_cents,
        currency="usd",
        refunded_cents=0,
        payment_intent_id=f"pi_test_{uuid.uuid4().hex}",
        paid_at=now,
    )
    db.add(top_up)
    await db.flush()
    return top_up
