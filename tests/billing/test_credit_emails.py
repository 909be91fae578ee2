"""The e-mails about credit running out: a runway alert once per crossing of each threshold
(24 h and 1 h by default), re-armed when the runway is back above it, sent once however many
checks run at once; and the e-mail naming the instances the credit cap stopped, sent once. Seen
in the outbox."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.auth.models import User
from computebill.billing import service
from computebill.billing.jobs import send_credit_stop_email
from computebill.config import MailBackend, Settings
from computebill.credits.models import EntryKind
from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances import service as instances
from computebill.instances.jobs import enforce_credit_cap
from computebill.instances.models import Instance, InstanceStatus
from computebill.jobs import JobName, JobRequest, take_requested_jobs
from computebill.mail.models import OutboxEmail
from tests.credits.ledger import add_user, post
from tests.instances.metering import add_metered
from tests.support.jobs import RecordingPublisher, job_context

HOUR = 3600
THRESHOLDS = (24 * HOUR, HOUR)
BASE_URL = "https://cloud.example.com/"
RATE = 3_600_000  # millicents an hour: 1,000 a second, $36.00 an hour
START = datetime(2026, 11, 2, tzinfo=UTC)


async def _alerts(db: AsyncSession, *, now: datetime) -> int:
    return await service.send_runway_alerts(
        db,
        thresholds_seconds=THRESHOLDS,
        backend=MailBackend.OUTBOX,
        public_base_url=BASE_URL,
        now=now,
    )


async def _emails(db: AsyncSession, user_id: uuid.UUID, kind: str) -> list[OutboxEmail]:
    found = await db.scalars(
        select(OutboxEmail)
        .where(OutboxEmail.dedupe_key.startswith(f"{kind}:{user_id}:"))
        .order_by(OutboxEmail.created_at)
    )
    return list(found)


async def _burning(db: AsyncSession, *, hours_of_credit: int) -> uuid.UUID:
    """A user with `hours_of_credit` at RATE, and an instance running at RATE since START."""
    user_id = await add_user(db)
    await post(db, user_id, EntryKind.TOP_UP, RATE * hours_of_credit, now=START)
    await add_metered(db, user_id, rate=RATE, started_at=START)
    return user_id


async def test_each_threshold_is_e_mailed_once_per_crossing(db_session: AsyncSession) -> None:
    db = db_session
    user_id = await _burning(db, hours_of_credit=25)
    email = await db.scalar(select(User.email).where(User.id == user_id))

    await _alerts(db, now=START)  # 25 h of runway: nothing to say
    assert await _emails(db, user_id, "runway") == []

    crossed = START + timedelta(hours=1, seconds=1)  # 23:59:59 left
    await _alerts(db, now=crossed)
    [first] = await _emails(db, user_id, "runway")
    assert first.recipient == email
    assert first.dedupe_key == f"runway:{user_id}:{24 * HOUR}:1"
    assert first.subject == "Your compute credit runs out in less than 24 h"
    assert "Your credit balance is $863.99." in first.body  # $864 less a second's $0.01
    assert "$36.00 an hour, it lasts 23 h 59 min more" in first.body
    assert "(until 2026-11-03 01:00 UTC)" in first.body
    assert "https://cloud.example.com/billing" in first.body

    for minutes in (1, 60, 600):  # staying below sends nothing more
        await _alerts(db, now=crossed + timedelta(minutes=minutes))
    assert len(await _emails(db, user_id, "runway")) == 1

    await _alerts(db, now=START + timedelta(hours=24, seconds=1))  # under an hour left
    first_again, second = await _emails(db, user_id, "runway")
    assert first_again.id == first.id
    assert second.dedupe_key == f"runway:{user_id}:{HOUR}:1"
    assert second.subject == "Your compute credit runs out in less than 1 h"
    assert "it lasts 59 min more" in second.body
    await _alerts(db, now=START + timedelta(hours=24, minutes=30))
    assert len(await _emails(db, user_id, "runway")) == 2

    # A top-up lifts the runway above both thresholds: both are armed again, nothing is sent.
    topped_up = START + timedelta(hours=24, minutes=31)
    await post(db, user_id, EntryKind.TOP_UP, RATE * 30, now=topped_up)
    await _alerts(db, now=topped_up)
    assert len(await _emails(db, user_id, "runway")) == 2

    # ... so crossing 24 h again is a new e-mail.
    await _alerts(db, now=topped_up + timedelta(hours=7))
    emails = await _emails(db, user_id, "runway")
    assert [e.dedupe_key for e in emails[2:]] == [f"runway:{user_id}:{24 * HOUR}:2"]


async def test_a_runway_below_both_thresholds_at_once_sends_one_e_mail(
    db_session: AsyncSession,
) -> None:
    db = db_session
    user_id = await _burning(db, hours_of_credit=25)
    await _alerts(db, now=START + timedelta(hours=24, minutes=30))
    [only] = await _emails(db, user_id, "runway")
    assert only.dedupe_key == f"runway:{user_id}:{HOUR}:1"
    await _alerts(db, now=START + timedelta(hours=24, minutes=31))
    assert len(await _emails(db, user_id, "runway")) == 1


async def test_an_account_that_does_not_burn_gets_no_alert(db_session: AsyncSession) -> None:
    db = db_session
    user_id = await add_user(db)
    await post(db, user_id, EntryKind.TOP_UP, 1_000, now=START)
    await add_metered(db, user_id, rate=RATE, started_at=None)  # still provisioning
    await _alerts(db, now=START + timedelta(hours=1))
    assert await _emails(db, user_id, "runway") == []


async def test_no_thresholds_no_alerts(db_session: AsyncSession) -> None:
    user_id = await _burning(db_session, hours_of_credit=1)
    sent = await service.send_runway_alerts(
        db_session,
        thresholds_seconds=(),
        backend=MailBackend.OUTBOX,
        public_base_url=BASE_URL,
        now=START + timedelta(minutes=30),
    )
    assert sent == 0
    assert await _emails(db_session, user_id, "runway") == []


async def test_two_checks_at_once_send_one_e_mail(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    async with unit_of_work(sessions) as db:
        user_id = await _burning(db, hours_of_credit=2)
    now = START + timedelta(hours=1, minutes=30)

    async def check() -> None:
        async with unit_of_work(sessions) as db:
            await _alerts(db, now=now)

    try:
        await asyncio.gather(check(), check(), check())
        async with unit_of_work(sessions) as db:
            # Under 24 h and under 1 h at once: the one e-mail of the lowest threshold.
            [only] = await _emails(db, user_id, "runway")
            assert only.dedupe_key == f"runway:{user_id}:{HOUR}:1"
    finally:  # stop it burning, so later checks of other tests leave it alone
        async with unit_of_work(sessions) as db:
            await db.execute(
                update(Instance)
                .where(Instance.user_id == user_id)
                .values(status=InstanceStatus.TERMINATED)
            )


async def test_instances_stopped_for_credit_are_e_mailed_once(db_session: AsyncSession) -> None:
    db = db_session
    user_id = await add_user(db)
    await post(db, user_id, EntryKind.TOP_UP, 10_000, now=START)
    first = await add_metered(db, user_id, rate=RATE, started_at=START)
    second = await add_metered(db, user_id, rate=RATE, started_at=None)
    other_user = await add_user(db)
    others = await add_metered(db, other_user, rate=RATE, started_at=START)
    take_requested_jobs(db)
    now = START + timedelta(seconds=30)

    assert await instances.stop_for_credit(db, [user_id, other_user], now=now) == 3
    requested = [r for r in take_requested_jobs(db) if r.name is JobName.SEND_CREDIT_STOP_EMAIL]
    ids = sorted([str(first.id), str(second.id)])
    assert set(requested) == {
        JobRequest(JobName.SEND_CREDIT_STOP_EMAIL, (str(user_id), ",".join(ids))),
        JobRequest(JobName.SEND_CREDIT_STOP_EMAIL, (str(other_user), str(others.id))),
    }
    assert len(requested) == 2
    # Stopping again stops nothing, and asks for no e-mail.
    await db.flush()
    assert await instances.stop_for_credit(db, [user_id], now=now) == 0
    assert take_requested_jobs(db) == []

    async def send() -> bool:
        return await service.send_credit_stop_email(
            db,
            user_id,
            [uuid.UUID(i) for i in reversed(ids)],
            backend=MailBackend.OUTBOX,
            public_base_url=BASE_URL,
            now=now + timedelta(seconds=1),
        )

    assert await send() is True
    assert await send() is False  # a retried job sends nothing more
    [email] = await _emails(db, user_id, "credit_stop")
    assert email.subject == "2 instances were stopped: your compute credit ran out"
    assert first.name in email.body
    assert second.name in email.body
    assert "1 × NVIDIA H100, us-east-1" in email.body
    # 30 s at $36 an hour were charged: 10,000 - 30,000 millicents.
    assert "Your credit balance is -$0.20." in email.body
    assert "https://cloud.example.com/billing" in email.body
    assert await _emails(db, other_user, "credit_stop") == []


async def test_the_cap_job_asks_for_the_stop_e_mail_after_commit_and_it_is_sent_once(
    settings: Settings, engine: AsyncEngine
) -> None:
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as db:
        user_id = await add_user(db)
        await post(db, user_id, EntryKind.TOP_UP, 1_000, now=now)
        instance = await add_metered(db, user_id, rate=RATE, started_at=now - timedelta(hours=1))
    recorded = RecordingPublisher()
    context = job_context(settings, sessions, recorded)
    await enforce_credit_cap(context, str(user_id))  # an hour at $36 on $0.01: stopped
    [request] = [r for r in recorded.sent if r.name is JobName.SEND_CREDIT_STOP_EMAIL]
    assert request.args == (str(user_id), str(instance.id))

    await send_credit_stop_email(context, *(str(a) for a in request.args))
    await send_credit_stop_email(context, *(str(a) for a in request.args))  # retried
    async with unit_of_work(sessions) as db:
        [email] = await _emails(db, user_id, "credit_stop")
    assert email.subject == "An instance was stopped: your compute credit ran out"
    assert instance.name in email.body
    assert f"{str(settings.public_base_url).rstrip('/')}/billing" in email.body
