"""Background jobs of the credits domain: thin, they load and call the service."""

from __future__ import annotations

import structlog

from computebill.credits import service
from computebill.db import unit_of_work
from computebill.jobs import JobContext

log = structlog.get_logger(__name__)


async def verify_credit_ledger(ctx: JobContext) -> None:
    """Daily: every balance must equal the sum of its entries; each one that does not is an
    alert (docs/architecture.md §4)."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        mismatches = await service.verify_ledger(db)
    for mismatch in mismatches:
        log.error(
            "ledger_mismatch",
            alert=True,
            user_id=str(mismatch.user_id),
            balance_millicents=mismatch.balance_millicents,
            entries_sum_millicents=mismatch.entries_sum_millicents,
            last_balance_after_millicents=mismatch.last_balance_after_millicents,
        )
    if not mismatches:
        log.info("ledger_verified")
