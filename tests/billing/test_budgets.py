"""Monthly budgets: the month's usage (settled and not yet settled, top-ups not counted) against
the limit; an e-mail at 80 % and at 100 %, once each per month and limit; at 100 % new
pay-as-you-go launches refused (402 `budget_exceeded`) and, if asked, running ones stopped; the
running sum counts each usage entry once, across passes and months."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.billing import service
from computebill.config import MailBackend
from computebill.credits.models import CreditBudget, EntryKind
from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances import metering
from computebill.instances.models import Instance, InstanceStatus
from computebill.instances.service import BUDGET_REASON
from computebill.mail.models import OutboxEmail
from tests.credits.ledger import add_user, post
from tests.instances.metering import add_metered
from tests.instances.test_pay_as_you_go_api import H100, fund, launch
from tests.support.http import Api

RATE = 3_600_000  # millicents an hour: $36.00 an hour
START = datetime(2026, 11, 2, tzinfo=UTC)
BASE_URL = "https://cloud.example.com/"
LIMIT_CENTS = 10_000  # $100: 80 % after 2 h 13 min 20 s at RATE, 100 % after 2 h 46 min 40 s


async def _enforce(db: AsyncSession, now: datetime) -> int:
    return await service.enforce_budgets(
        db, backend=MailBackend.OUTBOX, public_base_url=BASE_URL, now=now
    )


async def _emails(db: AsyncSession, user_id: uuid.UUID) -> list[OutboxEmail]:
    found = await db.scalars(
        select(OutboxEmail)
        .where(OutboxEmail.dedupe_key.startswith(f"budget:{user_id}:"))
        .order_by(OutboxEmail.created_at, OutboxEmail.dedupe_key)
    )
    return list(found)


async def _budgeted(db: AsyncSession, *, stop_running: bool = False) -> tuple[uuid.UUID, Instance]:
    """A user with $1,000 of credit, a $100 budget and an instance running at RATE since START."""
    user_id = await add_user(db)
    await post(db, user_id, EntryKind.TOP_UP, 100_000_000, now=START - timedelta(days=1))
    await service.set_budget(
        db, user_id, monthly_limit_cents=LIMIT_CENTS, stop_running=stop_running, now=START
    )
    instance = await add_metered(db, user_id, rate=RATE, started_at=START)
    return user_id, instance


async def test_the_spend_counts_settled_and_unsettled_usage_but_not_top_ups(
    db_session: AsyncSession,
) -> None:
    db = db_session
    user_id, _ = await _budgeted(db)
    hour = START + timedelta(hours=1)
    await metering.settle(db, [i async for i in _ids(db, user_id)], now=hour)
    await post(db, user_id, EntryKind.TOP_UP, 5_000_000, now=hour)  # not spending
    spend = await metering.budget_spend(db, user_id, now=hour + timedelta(minutes=30))
    assert spend is not None
    assert spend.spent_millicents == RATE * 3 // 2  # 1 h settled, 30 min not yet
    assert (spend.monthly_limit_cents, spend.stop_running, spend.exceeded) == (
        LIMIT_CENTS,
        False,
        False,
    )
    status = await service.budget_status(db, user_id, now=hour + timedelta(minutes=30))
    assert status.spent_millicents == RATE * 3 // 2
    assert f"{status.month:%Y-%m}" == "2026-11"


async def _ids(db: AsyncSession, user_id: uuid.UUID):  # type: ignore[no-untyped-def]
    for instance_id in await db.scalars(select(Instance.id).where(Instance.user_id == user_id)):
        yield instance_id


async def test_alerts_at_80_and_100_percent_once_each_and_launches_refused_at_100(
    db_session: AsyncSession,
) -> None:
    db = db_session
    user_id, instance = await _budgeted(db)
    seventy = START + timedelta(hours=1, minutes=56)  # $69.60
    await metering.settle(db, [instance.id], now=seventy)
    await _enforce(db, seventy)
    assert await _emails(db, user_id) == []

    eighty = START + timedelta(hours=2, minutes=13, seconds=20)  # $80.00 exactly, not settled
    await _enforce(db, eighty)
    [first] = await _emails(db, user_id)
    assert first.dedupe_key == f"budget:{user_id}:2026-11:{LIMIT_CENTS}:80"
    assert first.subject == "You have used 80 % of your monthly budget of $100.00"
    assert "usage in November 2026 is $80.00" in first.body
    assert "https://cloud.example.com/billing" in first.body
    for minutes in (1, 10):  # staying between 80 and 100 sends nothing more
        await metering.settle(db, [instance.id], now=eighty + timedelta(minutes=minutes))
        await _enforce(db, eighty + timedelta(minutes=minutes))
    assert len(await _emails(db, user_id)) == 1
    await metering.admit_launch(
        db, user_id, rate_millicents_per_hour=RATE, min_runway_seconds=600, now=eighty
    )  # under the budget, with credit: admitted

    full = START + timedelta(hours=2, minutes=46, seconds=40)
    await _enforce(db, full)
    _, second = await _emails(db, user_id)
    assert second.dedupe_key == f"budget:{user_id}:2026-11:{LIMIT_CENTS}:100"
    assert second.subject == "You have reached your monthly budget of $100.00"
    assert "new pay-as-you-go launches are refused" in second.body
    await _enforce(db, full + timedelta(minutes=5))
    assert len(await _emails(db, user_id)) == 2
    with pytest.raises(metering.BudgetExceeded) as refused:
        await metering.admit_launch(
            db, user_id, rate_millicents_per_hour=RATE, min_runway_seconds=600, now=full
        )
    assert refused.value.status == 402
    assert refused.value.code == "budget_exceeded"
    # Without stop_running, the running instance runs on.
    await db.refresh(instance)
    assert instance.status is InstanceStatus.RUNNING


async def test_at_100_percent_stop_running_stops_the_instances(db_session: AsyncSession) -> None:
    db = db_session
    user_id, instance = await _budgeted(db, stop_running=True)
    full = START + timedelta(hours=3)
    await _enforce(db, full)
    await db.flush()
    assert instance.status is InstanceStatus.STOPPING
    settled = await db.scalar(
        select(Instance.billed_through_seconds).where(Instance.id == instance.id)
    )
    assert settled == 3 * 3600  # settled to the second it stopped
    [only] = await _emails(db, user_id)  # 80 and 100 crossed at once: the 100 % e-mail alone
    assert only.dedupe_key.endswith(":100")
    assert "Your running pay-as-you-go instances were stopped (1)." in only.body
    history = await db.scalar(select(Instance.status).where(Instance.id == instance.id))
    assert history is InstanceStatus.STOPPING
    await _enforce(db, full + timedelta(minutes=1))  # nothing left to stop, nothing to say
    assert len(await _emails(db, user_id)) == 1
    assert BUDGET_REASON == "the monthly budget was reached"


async def test_a_new_month_starts_from_zero_and_alerts_again(db_session: AsyncSession) -> None:
    db = db_session
    user_id, instance = await _budgeted(db)
    late = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    await metering.settle(db, [instance.id], now=late)  # far over November's budget
    await _enforce(db, late)
    assert len(await _emails(db, user_id)) == 1  # the 100 % one
    december = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 2 h more, 1 h of them in December
    await metering.settle(db, [instance.id], now=december)
    spend = await metering.budget_spend(db, user_id, now=december)
    assert spend is not None
    # The settlement at 01:00 charged 23:00–01:00 in one entry posted in December: the month
    # counts entries by their posting time, so all of it is December's.
    assert spend.spent_millicents == 2 * RATE
    assert not spend.exceeded
    await _enforce(db, december + timedelta(hours=1))  # $144 of $100: December's 100 % alert
    keys = [e.dedupe_key for e in await _emails(db, user_id)]
    assert keys[-1] == f"budget:{user_id}:2026-12:{LIMIT_CENTS}:100"
    row = await db.get(CreditBudget, user_id, populate_existing=True)
    assert row is not None
    assert (f"{row.month:%Y-%m}", row.alerted_percent) == ("2026-12", 100)


async def test_each_usage_entry_is_counted_once_across_passes(db_session: AsyncSession) -> None:
    db = db_session
    user_id, instance = await _budgeted(db)
    now = START
    for _ in range(5):
        now += timedelta(minutes=7)
        await metering.settle(db, [instance.id], now=now)
        await _enforce(db, now)
        await _enforce(db, now)  # a second pass at the same moment adds nothing
        row = await db.get(CreditBudget, user_id, populate_existing=True)
        assert row is not None
        assert row.spent_millicents == metering.owed_millicents(
            RATE, int((now - START).total_seconds())
        )


async def test_a_changed_limit_is_judged_afresh(db_session: AsyncSession) -> None:
    db = db_session
    user_id, _ = await _budgeted(db)
    now = START + timedelta(hours=2, minutes=20)  # $84: 80 % of $100
    await _enforce(db, now)
    await service.set_budget(
        db, user_id, monthly_limit_cents=LIMIT_CENTS * 2, stop_running=False, now=now
    )
    await _enforce(db, now)  # 42 % of $200: nothing to say
    assert len(await _emails(db, user_id)) == 1
    later = START + timedelta(hours=4, minutes=30)  # $162: 81 % of $200
    await _enforce(db, later)
    keys = [e.dedupe_key for e in await _emails(db, user_id)]
    assert keys[-1] == f"budget:{user_id}:2026-11:{LIMIT_CENTS * 2}:80"
    await service.set_budget(db, user_id, monthly_limit_cents=None, stop_running=False, now=now)
    assert await metering.budget_spend(db, user_id, now=later) is None
    with pytest.raises(service.BudgetLimitOutOfRange):
        await service.set_budget(db, user_id, monthly_limit_cents=0, stop_running=False, now=now)


async def test_two_passes_at_once_send_each_alert_once(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    async with unit_of_work(sessions) as db:
        user_id, _ = await _budgeted(db)
    now = START + timedelta(hours=2, minutes=20)

    async def check() -> None:
        async with unit_of_work(sessions) as db:
            await _enforce(db, now)

    try:
        await asyncio.gather(check(), check(), check())
        async with unit_of_work(sessions) as db:
            [only] = await _emails(db, user_id)
            assert only.dedupe_key.endswith(":80")
    finally:  # stop it burning and drop the budget, so later tests' passes leave it alone
        async with unit_of_work(sessions) as db:
            await db.execute(
                update(Instance)
                .where(Instance.user_id == user_id)
                .values(status=InstanceStatus.TERMINATED)
            )
            await service.set_budget(
                db, user_id, monthly_limit_cents=None, stop_running=False, now=now
            )


async def test_the_budget_api_sets_reads_validates_and_refuses_launches(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    headers = {"authorization": f"Bearer {pair['access_token']}"}
    await fund(engine, pair["user"]["id"], 100_000_000)

    empty = await api.http.get("/api/v1/credits/budget", headers=headers)
    assert empty.status_code == 200, empty.text
    assert empty.json() | {"month": "-"} == {
        "monthly_limit_cents": None,
        "stop_running": False,
        "month": "-",
        "spent_millicents": 0,
        "spent_cents": 0,
        "percent_used": None,
        "exceeded": False,
    }
    for bad in ({"monthly_limit_cents": 0}, {"monthly_limit_cents": -5}, {"stop_running": True}):
        refused = await api.http.put("/api/v1/credits/budget", json=bad, headers=headers)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert (
        await api.http.put(
            "/api/v1/credits/budget", json={"monthly_limit_cents": 10**12}, headers=headers
        )
    ).json()["code"] == "budget_limit_out_of_range"

    tiny = await api.http.put(
        "/api/v1/credits/budget",
        json={"monthly_limit_cents": 1, "stop_running": True},
        headers=headers,
    )
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["monthly_limit_cents"] == 1
    assert tiny.json()["stop_running"] is True
    # Nothing spent yet: a launch is admitted, and its usage soon reaches one cent.
    first = await launch(api, pair["access_token"], H100)
    assert first.status_code == 201, first.text
    user_id = uuid.UUID(pair["user"]["id"])
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await db.execute(
            update(Instance)
            .where(Instance.user_id == user_id)
            .values(
                status=InstanceStatus.RUNNING, started_at=datetime.now(UTC) - timedelta(hours=1)
            )
        )
    read = await api.http.get("/api/v1/credits/budget", headers=headers)
    assert read.json()["exceeded"] is True
    assert read.json()["percent_used"] >= 100
    second = await launch(api, pair["access_token"], H100)
    assert second.status_code == 402, second.text
    assert second.json()["code"] == "budget_exceeded"
    assert second.json()["monthly_limit_cents"] == 1
    removed = await api.http.put(
        "/api/v1/credits/budget", json={"monthly_limit_cents": None}, headers=headers
    )
    assert removed.json()["monthly_limit_cents"] is None
    async with unit_of_work(create_sessionmaker(engine)) as db:  # stop it burning
        await db.execute(
            update(Instance)
            .where(Instance.user_id == user_id)
            .values(status=InstanceStatus.TERMINATED)
        )
