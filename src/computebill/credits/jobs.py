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


async def expire_credit_grants(ctx: JobContext) -> None:
    """Every minute: what is left of each grant past its expiry leaves the balance as an
    `expiry` entry, at most `EXPIRY_BATCH` grants a pass, the oldest first (docs/architecture.md
    §4); the next pass takes the rest."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        expired = await service.expire_due_grants(db, now=ctx.clock.now())
    for grant in expired:
        log.info(
            "credit_grant_expired",
            grant_entry_id=str(grant.grant_entry_id),
            user_id=str(grant.user_id),
            expired_millicents=grant.expired_millicents,
            expiry_entry_id=str(grant.expiry_entry_id),
        )
