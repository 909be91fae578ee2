"""The webhook inbox: verified events are stored (in batches, by each app process's
`EventInbox`), then processed by a job; the sweep asks again for events no job finished, and an
operator can replay one (docs/architecture.md §5.1, §5.3)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
import structlog
from sqlalchemy import (
    DateTime,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from computebill.audit import service as audit
from computebill.clock import Clock
from computebill.db import send_jobs
from computebill.errors import AppError, DependencyUnavailable, NotFound
from computebill.jobs import JobName, JobPublisher, JobRequest, request_job
from computebill.paging import newest_first, read_page
from computebill.payments.models import (
    EVENT_OBJECT_ID,
    EVENT_PAYMENT_INTENT,
    EventStatus,
    StripeEvent,
)
from computebill.tracing import current_trace_context

log = structlog.get_logger(__name__)


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


@dataclass(frozen=True, slots=True)
class EventRow:
    """What the inbox stores of one verified event."""

    id: str
    type: str
    created: datetime
    payload: str  # the event as JSON text, free of NUL characters


def _event_row(event: dict[str, Any]) -> EventRow:
    payload = orjson.dumps(event)
    # orjson writes a NUL only as this escape, so only such an event needs the walk through it
    # (a false alarm, an escaped backslash before "u0000", costs the walk and changes nothing).
    if b"\\u0000" in payload:
        event = _storable(event)
        payload = orjson.dumps(event)
    return EventRow(
        id=str(event["id"]),
        type=str(event["type"]),
        created=datetime.fromtimestamp(int(event["created"]), tz=UTC),
        payload=payload.decode(),
    )


# One statement for any number of events: the rows arrive as four arrays, so the SQL (and the
# prepared statement) is the same for a batch of 1 or of 256.
_columns = (
    func.unnest(
        bindparam("ids", type_=ARRAY(Text)),
        bindparam("types", type_=ARRAY(Text)),
        bindparam("created", type_=ARRAY(DateTime(timezone=True))),
        bindparam("payloads", type_=ARRAY(Text)),
    )
    .table_valued("id", "type", "created", "payload")
    .render_derived(name="event")
)
_INSERT_EVENTS = (
    insert(StripeEvent)
    .from_select(
        ["id", "type", "created", "payload", "received_at", "status", "attempts"],
        select(
            _columns.c.id,
            _columns.c.type,
            _columns.c.created,
            cast(_columns.c.payload, JSONB),
            bindparam("received_at", type_=DateTime(timezone=True)),
            literal(EventStatus.PENDING, StripeEvent.__table__.c.status.type),
            literal(0),
        ),
    )
    .on_conflict_do_nothing(index_elements=[StripeEvent.id])
    .returning(StripeEvent.id)
)


async def insert_events(
    connection: AsyncConnection, rows: Sequence[EventRow], *, now: datetime
) -> set[str]:
    """Insert events of distinct ids; the ids that were new (a stored one is left as it is)."""
    result = await connection.execute(
        _INSERT_EVENTS,
        {
            "ids": [row.id for row in rows],
            "types": [row.type for row in rows],
            "created": [row.created for row in rows],
            "payloads": [row.payload for row in rows],
            "received_at": now,
        },
    )
    return set(result.scalars())


async def store_event(db: AsyncSession, event: dict[str, Any], *, now: datetime) -> bool:
    """Keep a verified event in the session's transaction; True when it is new (a duplicate
    delivery inserts nothing)."""
    row = _event_row(event)
    inserted = await insert_events(await db.connection(), [row], now=now)
    if inserted:
        request_job(db, JobName.PROCESS_STRIPE_EVENT, row.id)
    return bool(inserted)


@dataclass(frozen=True, slots=True)
class _Delivery:
    row: EventRow
    answer: asyncio.Future[bool]  # True: new; False: a duplicate
    # The delivery's request span, for its job: the batch is written from a task of its own.
    trace_context: dict[str, str] | None


def _refuse(delivery: _Delivery) -> None:
    if not delivery.answer.done():  # its request may have gone (cancelled) meanwhile
        delivery.answer.set_exception(DependencyUnavailable())


class EventInbox:
    """Stores the webhook's events for one app process with group commit (docs/architecture.md
    §5.1): deliveries that arrive while a batch is being written wait together, then go in as one
    INSERT and one COMMIT, and their jobs are sent in one pipelined call after it. Each delivery
    is answered by its batch's outcome: stored (new or duplicate), or refused with a 503 when the
    batch failed, so nothing is acknowledged that is not committed."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: JobPublisher,
        clock: Clock,
        *,
        max_batch: int = 256,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._clock = clock
        self._max_batch = max_batch
        self._waiting: list[_Delivery] = []
        self._writer: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def store(self, event: dict[str, Any]) -> bool:
        """Keep a verified event; True when it is new. Returns once the batch it joined has
        committed; raises `DependencyUnavailable` (503) when that batch could not be stored."""
        delivery = _Delivery(
            _event_row(event), asyncio.get_running_loop().create_future(), current_trace_context()
        )
        self._waiting.append(delivery)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting())
        return await delivery.answer

    def _next_batch(self) -> list[_Delivery]:
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        return batch

    async def _write_waiting(self) -> None:
        batch: list[_Delivery] = []
        try:
            while self._waiting:
                batch = self._next_batch()
                try:
                    # One connection while deliveries keep coming: a checkout (and the pool's
                    # ping) per burst, not per batch. After a failure, a fresh one.
                    async with self._engine.connect() as connection:
                        while True:
                            await self._write(connection, batch)
                            if not self._waiting:
                                break
                            batch = self._next_batch()
                except Exception as error:
                    log.warning("inbox_batch_failed", events=len(batch), error=repr(error)[:500])
                    for delivery in batch:
                        _refuse(delivery)
        finally:
            self._writer = None
            # Only if this task was cancelled (the loop is closing) is anyone left unanswered.
            for delivery in (*batch, *self._waiting):
                _refuse(delivery)
            self._waiting.clear()

    async def _write(self, connection: AsyncConnection, batch: list[_Delivery]) -> None:
        # Copies of one event in one batch: the first to arrive is inserted, the rest are
        # duplicates, as if they had come after it.
        first: dict[str, _Delivery] = {}
        for delivery in batch:
            first.setdefault(delivery.row.id, delivery)
        rows = [delivery.row for delivery in first.values()]
        async with connection.begin():
            inserted = await insert_events(connection, rows, now=self._clock.now())
        for delivery in batch:
            if not delivery.answer.done():
                delivery.answer.set_result(
                    first[delivery.row.id] is delivery and delivery.row.id in inserted
                )
        if inserted:
            jobs = [
                JobRequest(
                    JobName.PROCESS_STRIPE_EVENT,
                    (delivery.row.id,),
                    trace_context=delivery.trace_context,
                )
                for delivery in first.values()
                if delivery.row.id in inserted
            ]
            sending = asyncio.create_task(send_jobs(jobs, self._publisher))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        """Answer every delivery still waiting, then let their jobs be sent."""
        while self._writer is not None:
            await asyncio.wait([self._writer])
        if self._sending:
            await asyncio.wait(self._sending)


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


async def replay_event_audited(
    db: AsyncSession, event_id: str, *, actor: audit.Actor, now: datetime
) -> None:
    """An operator's replay (the API's and the console page's): the event is queued again and
    the audit log records who did it; 404 for an unknown event."""
    if not await replay_event(db, event_id):
        raise NotFound(f"No stored event {event_id!r}.")
    await audit.record(
        db,
        actor,
        audit.AuditAction.EVENT_REPLAYED,
        target_type="stripe_event",
        target_id=event_id,
        now=now,
    )


# The console's inbox ----------------------------------------------------------------------------


class EventSummary(NamedTuple):
    """An event as the console's inbox lists it, read without the ORM."""

    id: str
    type: str
    status: EventStatus
    attempts: int
    outcome: str | None
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None

    @property
    def created_at(self) -> datetime:
        """The time the list is paged by: when the event was received."""
        return self.received_at


_events = StripeEvent.__table__.c


class BadEventFilter(AppError):
    status = 422
    code = "invalid_filter"


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[EventSummary]
    next_cursor: str | None  # where the next (older) page starts; None on the last page


async def event_page(
    db: AsyncConnection,
    *,
    status: EventStatus | None,
    event_type: str | None,
    limit: int,
    cursor: str | None,
) -> EventPage:
    """One page of the inbox, newest first, of one status and one type if given."""
    conditions = []
    if status is not None:
        conditions.append(_events.status == status)
    if event_type is not None:
        conditions.append(_events.type == event_type)
    statements = newest_first(
        select(*(_events[name] for name in EventSummary._fields)).where(*conditions),
        _events.received_at,
        _events.id,
    )
    page, next_cursor = await read_page(
        db, statements, {}, make=EventSummary._make, limit=limit, cursor=cursor
    )
    return EventPage(events=page, next_cursor=next_cursor)


async def get_event(db: AsyncSession, event_id: str) -> StripeEvent:
    event = await db.get(StripeEvent, event_id)
    if event is None:
        raise NotFound(f"No stored event {event_id!r}.")
    return event


# Bounded: an order has a handful of events (its checkout, payment, refunds, disputes).
EVENTS_OF_AN_ORDER = 100


async def events_about(db: AsyncSession, object_ids: Sequence[str]) -> list[StripeEvent]:
    """The stored events about any of these Stripe objects (an order's Checkout Session,
    PaymentIntent and charge): those whose object is one of them, or whose object's
    PaymentIntent is. Each side is answered by its expression index. Oldest first."""
    if not object_ids:
        return []
    found = await db.scalars(
        select(StripeEvent)
        .where(
            or_(
                literal_column(EVENT_OBJECT_ID).in_(object_ids),
                literal_column(EVENT_PAYMENT_INTENT).in_(object_ids),
            )
        )
        .order_by(StripeEvent.received_at, StripeEvent.id)
        .limit(EVENTS_OF_AN_ORDER)
    )
    return list(found)
