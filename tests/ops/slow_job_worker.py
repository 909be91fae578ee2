"""A worker process whose one job is slow on purpose: it waits, then posts a credit grant under
a key of its own, so running it again never grants twice (as every job of the platform makes
its effect once however often it runs). Run as `python -m tests.ops.slow_job_worker`,
configured by the environment like `computebill worker`; it logs each start of the job, so a
test sees a job given back and run again."""

from __future__ import annotations

import uuid
from datetime import timedelta

import anyio
import structlog
from streaq import Worker

from computebill.config import Settings, get_settings
from computebill.credits.service import grant_credit
from computebill.db import unit_of_work
from computebill.jobs import JobContext
from computebill.logging import configure_logging
from computebill.worker.registry import JobSpec
from computebill.worker.runtime import build_worker

SLOW_GRANT = "grant_slowly"
GRANT_MILLICENTS = 1000
STARTED = "slow_grant_started"

log = structlog.get_logger(__name__)


def grant_key(user_id: uuid.UUID) -> str:
    return f"slow-grant:{user_id}"


async def grant_slowly(ctx: JobContext, user_id: str, seconds: float) -> None:
    log.info(STARTED, worker_id=ctx.worker_id)
    await anyio.sleep(seconds)
    async with unit_of_work(ctx.sessionmaker) as db:
        await grant_credit(
            db,
            user_id=uuid.UUID(user_id),
            amount_millicents=GRANT_MILLICENTS,
            idempotency_key=grant_key(uuid.UUID(user_id)),
            expires_at=None,
            now=ctx.clock.now(),
        )


def slow_job_worker(settings: Settings) -> Worker[JobContext]:
    spec = JobSpec(grant_slowly, timeout=timedelta(seconds=120), max_tries=3)
    return build_worker(settings, concurrency=2, specs={SLOW_GRANT: spec})


if __name__ == "__main__":
    settings = get_settings()
    configure_logging(settings)
    slow_job_worker(settings).run_sync()
