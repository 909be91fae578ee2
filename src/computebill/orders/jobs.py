"""Background jobs of the orders domain."""

from __future__ import annotations

import uuid

from computebill.db import unit_of_work
from computebill.jobs import JobContext
from computebill.mail.service import send_email
from computebill.orders import service


async def send_order_receipt(ctx: JobContext, order_id: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        receipt = await service.receipt(db, uuid.UUID(order_id))
        link = f"{str(ctx.settings.public_base_url).rstrip('/')}/account/orders/{order_id}"
        await send_email(
            db,
            backend=ctx.settings.mail_backend,
            dedupe_key=f"receipt:{order_id}",
            recipient=receipt.recipient,
            subject=receipt.subject,
            body=f"{receipt.body}\n\nYour order and its instances: {link}",
            now=ctx.clock.now(),
        )
