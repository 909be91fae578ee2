"""The webhook inbox: verified events are stored, then processed by a job; the sweep asks again
for events no job finished, and an operator can replay one (docs/architecture.md §5.1, §5.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.jobs import JobName, request_job
from computebill.payments.models import EventStatus, StripeEvent


def _storable(value: Any) -> Any:
    """The event with every NUL character (in keys and strings) replaced by U+FFFD: PostgreSQL
    cannot hold a NUL in jsonb, and a signed event must be stored, not answered with a 500."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


async def store_event(db: AsyncSession, event: dict[str, Any], *, now: datetime) -> bool:
    """Keep a verified event; True when it is new (a duplicate delivery inserts nothing)."""
    event = _storable(event)
    inserted = await db.scalar(
        insert(StripeEvent)
        .values(
            id=str(event["id"]),
            type=str(event["type"]),
            created=datetime.fromtimestamp(int(event["created"]), tz=UTC),
            payload=event,
            received_at=now,
            status=EventStatus.PENDING,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=[StripeEvent.id])
        .returning(StripeEvent.id)
    )
    if inserted is not None:
        request_job(db, JobName.PROCESS_STRIPE_EVENT, inserted)
    return inserted is not None


# An event being retried has a job waiting in the queue; only if the queue lost it (Redis
# flushed) does the sweep step in, long after the last backoff would have run.
SWEEP_RETRYING_AFTER = timedelta(minutes=10)


async def requeue_unprocessed_events(
    db: AsyncSession, *, now: datetime, sweep_after: timedelta
) -> int:
    """The sweep: ask again for stored events that no job has finished (`sweep_after` is how
    long an event's first job is given)."""
    ids = list(
        await db.scalars(
            select(StripeEvent.id)
            .where(
                StripeEvent.status == EventStatus.PENDING,
                or_(
                    and_(StripeEvent.attempts == 0, StripeEvent.received_at < now - sweep_after),
                    StripeEvent.received_at < now - SWEEP_RETRYING_AFTER,
                ),
            )
            .order_by(StripeEvent.received_at)
            .limit(500)
        )
    )
    for event_id in ids:
        request_job(db, JobName.PROCESS_STRIPE_EVENT, event_id)
    return len(ids)


async def replay_event(db: AsyncSession, event_id: str) -> bool:
    """Run an event's processing again (after it failed for good, say); False if unknown."""
    result = await db.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_id)
        .values(status=EventStatus.PENDING, processed_at=None, last_error=None)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return False
    request_job(db, JobName.PROCESS_STRIPE_EVENT, event_id)
    return True


async def record_event_failure(db: AsyncSession, event_id: str, *, error: str, final: bool) -> None:
    await db.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_id, StripeEvent.processed_at.is_(None))
        .values(
            attempts=StripeEvent.attempts + 1,
            last_error=error[:1000],
            status=EventStatus.FAILED if final else EventStatus.PENDING,
        )
    )
