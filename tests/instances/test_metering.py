"""Per-second metering of pay-as-you-go instances: each settlement charges what was run since the
last one, exactly `floor(rate × seconds / 3600)` in all, once whatever repeats; the live balance
moves with every second; a launch needs credit for its runway; and the credit cap stops an
account's instances, its balance going no deeper than the bound the architecture states."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.credits.models import CreditEntry, EntryKind
from computebill.credits.service import active_grants, balance, grant_credit, verify_ledger
from computebill.instances import metering, service
from computebill.instances.models import Instance, InstanceStatus
from computebill.jobs import JobName, take_requested_jobs
from tests.credits.ledger import add_user, post
from tests.instances.metering import add_metered

RATE = 7_654_321  # millicents an hour: $76.54321, so few seconds cost whole millicents


def at(start: datetime, seconds: float) -> datetime:
    return start + timedelta(seconds=seconds)


async def usage_entries(db: AsyncSession, instance_id: uuid.UUID) -> list[CreditEntry]:
    return list(
        await db.scalars(
            select(CreditEntry)
            .where(CreditEntry.instance_id == instance_id, CreditEntry.kind == EntryKind.USAGE)
            .order_by(CreditEntry.position)
        )
    )


async def funded_user(db: AsyncSession, millicents: int) -> uuid.UUID:
    user_id = await add_user(db)
    await post(db, user_id, EntryKind.TOP_UP, millicents, payment_intent_id="pi_test")
    return user_id


async def assert_ledger_holds(db: AsyncSession, users: list[uuid.UUID]) -> None:
    assert [m for m in await verify_ledger(db) if m.user_id in users] == []


async def test_settlements_charge_each_second_once_and_cover_the_run_exactly(
    db_session: AsyncSession,
) -> None:
    user_id = await funded_user(db_session, 100_000_000)
    start = datetime(2026, 12, 3, 10, 0, 0, 300_000, tzinfo=UTC)
    instance = await add_metered(db_session, user_id, rate=RATE, started_at=start)

    # Under a second of run: nothing owed yet.
    assert (await metering.settle(db_session, [instance.id], now=at(start, 0.9))).charges == {}
    first = await metering.settle(db_session, [instance.id], now=at(start, 10.7))
    assert first.charges == {user_id: metering.owed_millicents(RATE, 10)}
    # The same moment again (a retried pass), and a pass whose clock is behind: nothing.
    assert (await metering.settle(db_session, [instance.id], now=at(start, 10.7))).charges == {}
    assert (await metering.settle(db_session, [instance.id], now=at(start, 3))).charges == {}
    await metering.settle(db_session, [instance.id], now=at(start, 7205.2))

    entries = await usage_entries(db_session, instance.id)
    assert [e.idempotency_key for e in entries] == [
        f"usage:{instance.id}:10",
        f"usage:{instance.id}:7205",
    ]
    assert sum(e.amount_millicents for e in entries) == -metering.owed_millicents(RATE, 7205)
    await db_session.refresh(instance)
    assert instance.billed_through_seconds == 7205
    expected = 100_000_000 - metering.owed_millicents(RATE, 7205)
    assert await balance(db_session, user_id) == expected
    await assert_ledger_holds(db_session, [user_id])


async def test_a_charge_below_a_millicent_waits_for_the_next_settlement(
    db_session: AsyncSession,
) -> None:
    user_id = await funded_user(db_session, 1_000_000)
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    cheap = 1_800  # millicents an hour: half a millicent a second
    instance = await add_metered(db_session, user_id, rate=cheap, started_at=start)

    assert (await metering.settle(db_session, [instance.id], now=at(start, 1))).charges == {}
    await metering.settle(db_session, [instance.id], now=at(start, 3))
    await db_session.refresh(instance)
    # 3 s cost 1.5 millicents: 1 is charged now, and the settled second is 3, so the next charge
    # counts from there and the total stays floor(rate × seconds / 3600).
    assert instance.billed_through_seconds == 3
    await metering.settle(db_session, [instance.id], now=at(start, 5))
    entries = await usage_entries(db_session, instance.id)
    assert sum(-e.amount_millicents for e in entries) == metering.owed_millicents(cheap, 5) == 2


async def test_one_pass_settles_every_running_instance_of_every_account(
    db_session: AsyncSession,
) -> None:
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    users = [await funded_user(db_session, 50_000_000) for _ in range(3)]
    running = {
        user_id: [
            await add_metered(db_session, user_id, rate=RATE + n, started_at=at(start, n))
            for n in range(2)
        ]
        for user_id in users
    }
    waiting = await add_metered(db_session, users[0], rate=RATE, started_at=None)

    settled = await metering.settle_all(db_session, now=at(start, 600))

    # Other tests' instances may run in this database too: these are what this test checks.
    for user_id in users:
        owed = sum(metering.owed_millicents(RATE + n, 600 - n) for n in range(2))
        assert settled.charges[user_id] == owed
        assert await balance(db_session, user_id) == 50_000_000 - owed
        for instance in running[user_id]:
            assert len(await usage_entries(db_session, instance.id)) == 1
    assert await usage_entries(db_session, waiting.id) == []
    await assert_ledger_holds(db_session, users)


async def test_the_safety_stop_ends_the_charge_at_max_hours(db_session: AsyncSession) -> None:
    user_id = await funded_user(db_session, 100_000_000)
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    instance = await add_metered(
        db_session, user_id, rate=RATE, started_at=start, expires_at=at(start, 3600)
    )
    await metering.settle(db_session, [instance.id], now=at(start, 3600 + 45))
    entries = await usage_entries(db_session, instance.id)
    assert [e.amount_millicents for e in entries] == [-RATE]


async def test_the_live_balance_moves_every_second_and_says_when_it_runs_out(
    db_session: AsyncSession,
) -> None:
    user_id = await funded_user(db_session, 10_000_000)  # $100
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    await add_metered(db_session, user_id, rate=3_600_000, started_at=start)  # $36/h: 1 ¢/s
    await add_metered(db_session, user_id, rate=RATE, started_at=None)  # not burning yet

    figures = await metering.live_figures(db_session, user_id, now=at(start, 100.5))
    assert figures.balance_millicents == 10_000_000
    assert figures.unsettled_millicents == 100_000
    assert figures.live_balance_millicents == 9_900_000
    assert figures.burn_millicents_per_hour == 3_600_000
    assert figures.committed_millicents_per_hour == 3_600_000 + RATE
    assert figures.runway_seconds == 9_900
    assert figures.exhausts_at == at(start, 100.5 + 9_900)
    # Settling moves money from unsettled to the ledger, not the live balance.
    await metering.settle_all(db_session, now=at(start, 100.5))
    again = await metering.live_figures(db_session, user_id, now=at(start, 100.5))
    assert (again.balance_millicents, again.unsettled_millicents) == (9_900_000, 0)
    assert again.live_balance_millicents == figures.live_balance_millicents


async def test_a_launch_needs_credit_for_its_runway_at_the_new_burn_rate(
    db_session: AsyncSession,
) -> None:
    user_id = await funded_user(db_session, 1_000_000)  # $10
    now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    # $10 lasts 10 minutes at $60/h: admitted, exactly.
    await metering.admit_launch(
        db_session, user_id, rate_millicents_per_hour=6_000_000, min_runway_seconds=600, now=now
    )
    await add_metered(db_session, user_id, rate=6_000_000, started_at=None)
    # A second one doubles the burn rate: $10 more is needed, and said.
    with pytest.raises(metering.InsufficientCredit) as refused:
        await metering.admit_launch(
            db_session,
            user_id,
            rate_millicents_per_hour=6_000_000,
            min_runway_seconds=600,
            now=now,
        )
    assert refused.value.status == 402
    assert refused.value.extensions is not None
    assert refused.value.extensions["shortfall_cents"] == 1_000

    nobody = await add_user(db_session)  # no credit at all, even with no runway asked for
    with pytest.raises(metering.InsufficientCredit):
        await metering.admit_launch(
            db_session, nobody, rate_millicents_per_hour=1, min_runway_seconds=0, now=now
        )


async def test_an_owner_stop_settles_the_run_to_the_second(db_session: AsyncSession) -> None:
    user_id = await funded_user(db_session, 100_000_000)
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    instance = await add_metered(db_session, user_id, rate=RATE, started_at=start)
    await metering.settle_all(db_session, now=at(start, 30))

    await service.request_stop(
        db_session, user_id=user_id, instance_id=instance.id, now=at(start, 95.5)
    )
    assert instance.status is InstanceStatus.STOPPING
    assert instance.run_ended_at == at(start, 95.5)
    entries = await usage_entries(db_session, instance.id)
    assert sum(-e.amount_millicents for e in entries) == metering.owed_millicents(RATE, 95)
    # Stopped: no later pass charges it again, and its cost stays what was charged.
    await metering.settle_all(db_session, now=at(start, 500))
    assert len(await usage_entries(db_session, instance.id)) == 2
    assert service.usage(instance, now=at(start, 500)).cost_so_far_millicents == (
        metering.owed_millicents(RATE, 95)
    )
    assert [r.name for r in take_requested_jobs(db_session)] == [JobName.STOP_INSTANCE]


async def test_the_cap_stops_an_account_at_its_margin_and_not_before(
    db_session: AsyncSession,
) -> None:
    rate = 3_600_000  # 1 ¢ a second
    user_id = await funded_user(db_session, 100_000)  # 100 s of it
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    instance = await add_metered(db_session, user_id, rate=rate, started_at=start)
    waiting = await add_metered(db_session, user_id, rate=rate, started_at=None)

    figures = await metering.live_figures(db_session, user_id, now=start)
    assert figures.seconds_until_cap(60) == 40
    assert user_id not in await metering.accounts_at_cap(
        db_session, now=at(start, 39.9), margin_seconds=60
    )
    # (The sweep reads every account: other tests' may be at their cap too, so this test looks
    # at its own instances, not at the count.)
    await service.sweep_credit_caps(db_session, margin_seconds=60, now=at(start, 39.9))
    assert (instance.status, waiting.status) == (
        InstanceStatus.RUNNING,
        InstanceStatus.PROVISIONING,
    )
    assert user_id in await metering.accounts_at_cap(
        db_session, now=at(start, 40), margin_seconds=60
    )

    await service.sweep_credit_caps(db_session, margin_seconds=60, now=at(start, 40))
    assert (instance.status, waiting.status) == (InstanceStatus.STOPPING, InstanceStatus.STOPPING)
    assert instance.run_ended_at == at(start, 40)
    assert await balance(db_session, user_id) == 100_000 - 40_000  # the margin is left
    await db_session.flush()  # as the sweep's commit does
    assert user_id not in await metering.accounts_at_cap(
        db_session, now=at(start, 90), margin_seconds=60
    )
    await assert_ledger_holds(db_session, [user_id])


@pytest.mark.parametrize("late_by", [1.0, 3.5, 5.0])
async def test_with_no_margin_a_balance_goes_no_deeper_than_the_sweep_interval_of_its_burn(
    db_session: AsyncSession, late_by: float
) -> None:
    """The bound (docs/architecture.md §4, pay as you go): the deepest a balance goes is
    Σ rates × (sweep interval + stop latency). Billing ends when the stop is recorded, so with
    no margin and a sweep `late_by` seconds after the balance reached zero, it is that many
    seconds of burn. (`exhausts_at` is rounded down to its second: zero falls within the second
    after it.)"""
    rates = [3_600_000, 1_234_567]
    burn = sum(rates)
    user_id = await funded_user(db_session, burn // 36)  # 100 s of the burn, rounded down
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    for rate in rates:
        await add_metered(db_session, user_id, rate=rate, started_at=start)
    zero = (await metering.live_figures(db_session, user_id, now=start)).exhausts_at
    assert zero is not None

    await service.sweep_credit_caps(
        db_session, margin_seconds=0, now=zero + timedelta(seconds=late_by)
    )

    await db_session.flush()  # as the sweep's commit does
    final = await balance(db_session, user_id)
    assert final >= -(burn * (late_by + 1) // 3600)  # + 1: the second in which zero fell
    running = await db_session.scalars(
        select(Instance).where(
            Instance.user_id == user_id, Instance.status == InstanceStatus.RUNNING
        )
    )
    assert list(running) == []


async def test_the_cap_job_looks_again_when_the_cap_is_due(db_session: AsyncSession) -> None:
    user_id = await funded_user(db_session, 100_000)
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    await add_metered(db_session, user_id, rate=3_600_000, started_at=start)
    take_requested_jobs(db_session)

    assert await service.enforce_credit_cap(db_session, user_id, margin_seconds=60, now=start) == 0
    [again] = take_requested_jobs(db_session)
    assert (again.name, again.args, again.at) == (
        JobName.ENFORCE_CREDIT_CAP,
        (str(user_id),),
        at(start, 40),
    )
    assert (
        await service.enforce_credit_cap(db_session, user_id, margin_seconds=60, now=at(start, 40))
        == 1
    )


async def test_usage_spends_promotional_grants_before_paid_credit(db_session: AsyncSession) -> None:
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    user_id = await funded_user(db_session, 1_000_000)  # $10 paid
    await grant_credit(
        db_session,
        user_id=user_id,
        amount_millicents=1_000_000,
        idempotency_key=f"grant:{uuid.uuid4()}",
        expires_at=start + timedelta(days=1),
        now=start,
    )
    instance = await add_metered(db_session, user_id, rate=3_600_000, started_at=start)

    await metering.settle(db_session, [instance.id], now=at(start, 300))  # $3

    [grant] = await active_grants(db_session, user_id, now=at(start, 300))
    assert grant.remaining_millicents == 700_000
    assert await balance(db_session, user_id) == 1_700_000


async def test_a_negative_balance_stops_the_account_at_once(db_session: AsyncSession) -> None:
    """A top-up refunded after it was spent leaves the balance below zero: the cap's job, asked
    for by the reversal, stops the instances whatever the margin, and launches are refused."""
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    user_id = await funded_user(db_session, 10_000_000)
    instance = await add_metered(db_session, user_id, rate=3_600_000, started_at=start)
    await post(db_session, user_id, EntryKind.TOP_UP_REVERSAL, -10_000_001)

    stopped = await service.enforce_credit_cap(db_session, user_id, margin_seconds=0, now=start)

    assert stopped == 1
    assert instance.status is InstanceStatus.STOPPING
    with pytest.raises(metering.InsufficientCredit):
        await metering.admit_launch(
            db_session, user_id, rate_millicents_per_hour=1, min_runway_seconds=0, now=start
        )
