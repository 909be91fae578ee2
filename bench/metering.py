"""Issue 15's metering benchmarks: one settlement pass over 10,000 running pay-as-you-go
instances in 2,000 accounts, timed in this process against the run's database, each followed by
the budgets' pass (every one of those accounts has a monthly budget); and, with a real worker,
the time from an account reaching its credit cap to its instances stopped.

Accounts, their credit and their instances are written straight into the database (as a
launch and a boot would leave them), never through the app: what is measured is the pass and
the cap, not the setup.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.report import format_table, progress, say, verdict
from bench.services import Environment, running_worker
from computebill.auth.models import User
from computebill.credits.models import CreditAccount, CreditBudget, CreditEntry, EntryKind
from computebill.credits.service import verify_ledger
from computebill.db import unit_of_work
from computebill.devserver.scratch import Sessions
from computebill.instances import metering
from computebill.instances.models import Billing, Instance, InstanceStatus
from computebill.jobs import JobName, JobRequest
from computebill.queue.publisher import AppQueuePublisher

PASS_ACCOUNTS, PASS_INSTANCES_PER_ACCOUNT = 2_000, 5
PASSES = 3  # each a minute of run later than the one before, so each charges every instance
AIM_PASS_SECONDS = 1.0
RATE = 7_654_321  # millicents an hour: every second costs whole millicents

CAP_ACCOUNTS, CAP_INSTANCES_PER_ACCOUNT = 40, 2
CAP_RATE = 1_800_000  # millicents an hour each: two instances burn 1 ¢ a second
CAP_LEAD_SECONDS = 8  # the first account reaches its cap this long after the setup
CAP_SPREAD_SECONDS = 10  # the others one after another over this long
CAP_WAIT_SECONDS = 60.0
MARGIN_SECONDS = 60  # the platform's default STOP_MARGIN_SECONDS

_users = cast(Table, User.__table__)
_accounts = cast(Table, CreditAccount.__table__)
_entries = cast(Table, CreditEntry.__table__)
_instances = cast(Table, Instance.__table__)
_budgets = cast(Table, CreditBudget.__table__)


@dataclass(frozen=True, slots=True)
class MeteredAccount:
    user_id: uuid.UUID
    balance_millicents: int
    instance_ids: list[uuid.UUID]


async def insert_metered_accounts(
    session: AsyncSession,
    balances: Sequence[int],
    *,
    instances_per_account: int,
    rate: int,
    started_at: datetime,
    users: Sequence[uuid.UUID] = (),
) -> list[MeteredAccount]:
    """One account per balance, its credit a top-up of that much, each with running
    pay-as-you-go instances at `rate` since `started_at`: of `users`, or of new users made for
    them. Four statements, whatever the count."""
    owners = list(users) or [uuid.uuid4() for _ in balances]
    accounts = [
        MeteredAccount(owner, balance, [uuid.uuid4() for _ in range(instances_per_account)])
        for owner, balance in zip(owners, balances, strict=True)
    ]
    if not users:
        await session.execute(
            insert(_users),
            [
                {
                    "id": a.user_id,
                    "email": f"metered-{a.user_id.hex}@bench.invalid",
                    "password_changed_at": started_at,
                }
                for a in accounts
            ],
        )
    await session.execute(
        insert(_accounts),
        [{"user_id": a.user_id, "balance_millicents": a.balance_millicents} for a in accounts],
    )
    await session.execute(
        insert(_entries),
        [
            {
                "id": uuid.uuid4(),
                "user_id": a.user_id,
                "kind": EntryKind.TOP_UP.value,
                "amount_millicents": a.balance_millicents,
                "balance_after_millicents": a.balance_millicents,
                "idempotency_key": f"top_up:pi_bench_{a.user_id.hex}",
                "payment_intent_id": f"pi_bench_{a.user_id.hex}",
                "created_at": started_at,
            }
            for a in accounts
        ],
    )
    await session.execute(
        insert(_instances),
        [
            {
                "id": instance_id,
                "user_id": a.user_id,
                "billing": Billing.PAY_AS_YOU_GO.value,
                "index": 0,
                "name": f"bench-{instance_id.hex[:6]}",
                "gpu_slug": "nvidia-h100",
                "gpu_name": "NVIDIA H100",
                "gpu_count": 1,
                "vcpus": 12,
                "storage_gb": 100,
                "region": "us-east-1",
                "rate_millicents_per_hour": rate,
                "status": InstanceStatus.RUNNING,
                "polls": 0,
                "billed_through_seconds": 0,
                "launch_requested_at": started_at,
                "started_at": started_at,
            }
            for a in accounts
            for instance_id in a.instance_ids
        ],
    )
    return accounts


@dataclass(frozen=True, slots=True)
class PassResult:
    seconds_of_run: int
    instances: int
    charged: int
    wall_seconds: float
    budgets: int  # budgets due after the pass (none: the limits are far off)
    budget_wall_seconds: float  # the budgets' pass after it


async def settlement_passes(db: Sessions) -> list[PassResult]:
    """PASSES settlement passes over PASS_ACCOUNTS x PASS_INSTANCES_PER_ACCOUNT instances, each
    a minute of run after the one before; the ledger verified at the end."""
    count = PASS_ACCOUNTS * PASS_INSTANCES_PER_ACCOUNT
    progress(f"metering setup: {PASS_ACCOUNTS} accounts, {count} running instances")
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    async with unit_of_work(db) as session:
        accounts = await insert_metered_accounts(
            session,
            [10**12] * PASS_ACCOUNTS,
            instances_per_account=PASS_INSTANCES_PER_ACCOUNT,
            rate=RATE,
            started_at=started,
        )
        # A budget each, far above what the passes spend, counted from the ledger's start.
        month, _ = metering.month_of(started)
        await session.execute(
            insert(_budgets),
            [
                {
                    "user_id": a.user_id,
                    "monthly_limit_cents": 10**8,
                    "stop_running": True,
                    "month": month,
                    "spent_millicents": 0,
                    "counted_through_position": 0,
                    "alerted_percent": 0,
                }
                for a in accounts
            ],
        )
    async with db() as session:  # the planner's statistics, as autovacuum would leave them
        connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        await connection.execute(
            text("ANALYZE instances, credit_accounts, credit_entries, credit_budgets")
        )
    results = []
    for n in range(1, PASSES + 1):
        seconds = 60 * n
        progress(f"settlement pass {n}: {count} instances, {seconds} s of run each")
        begun = time.perf_counter()
        async with unit_of_work(db) as session:
            settled = await metering.settle_all(session, now=started + timedelta(seconds=seconds))
        wall = time.perf_counter() - begun
        begun = time.perf_counter()
        async with unit_of_work(db) as session:
            due = await metering.budgets_due(session, now=started + timedelta(seconds=seconds))
        budget_wall = time.perf_counter() - begun
        results.append(
            PassResult(
                seconds, settled.instances, settled.charged_instances, wall, len(due), budget_wall
            )
        )
    async with db() as session:
        mismatches = await verify_ledger(session)
    if mismatches:
        raise RuntimeError(f"the ledger does not verify after the passes: {mismatches[:3]}")
    return results


@dataclass(frozen=True, slots=True)
class CapResult:
    accounts: int
    to_stopped: list[float]  # per account: its cap to the last of its instances leaving `running`
    to_released: list[float]  # ... to the last of its machines released (`terminated`)


def _quantile(values: Sequence[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


async def cap_latency(db: Sessions, environment: Environment, log: Any) -> CapResult:
    """CAP_ACCOUNTS accounts reaching their cap one after another, with a real worker: the cap's
    job is asked for once per account at the start (as a launch's boot asks for it), and the
    sweep runs as configured. Each latency is from the second its live balance reached the
    margin to the stop the worker recorded."""
    burn = CAP_RATE * CAP_INSTANCES_PER_ACCOUNT
    margin = -(-burn * MARGIN_SECONDS // 3600)
    per_second = burn // 3600
    started = datetime.now(UTC).replace(microsecond=0)
    # Account i reaches its cap at started + lead + i * spread / accounts (whole seconds).
    due = [CAP_LEAD_SECONDS + i * CAP_SPREAD_SECONDS // CAP_ACCOUNTS for i in range(CAP_ACCOUNTS)]
    async with unit_of_work(db) as session:
        accounts = await insert_metered_accounts(
            session,
            [margin + per_second * seconds for seconds in due],
            instances_per_account=CAP_INSTANCES_PER_ACCOUNT,
            rate=CAP_RATE,
            started_at=started,
        )
    caps = {a.user_id: started + timedelta(seconds=s) for a, s in zip(accounts, due, strict=True)}
    progress(f"credit cap: {CAP_ACCOUNTS} accounts reach their cap over {CAP_SPREAD_SECONDS} s")
    async with running_worker(environment, log):
        publisher = AppQueuePublisher(environment.settings)
        try:
            await publisher.publish(
                [JobRequest(JobName.ENFORCE_CREDIT_CAP, (str(a.user_id),)) for a in accounts]
            )
        finally:
            await publisher.close()
        ids = [i for a in accounts for i in a.instance_ids]
        deadline = time.monotonic() + CAP_WAIT_SECONDS
        while time.monotonic() < deadline:
            async with db() as session:
                live = await session.scalar(
                    select(func.count()).where(
                        _instances.c.id.in_(ids), _instances.c.status != InstanceStatus.TERMINATED
                    )
                )
            if not live:
                break
            await asyncio.sleep(0.5)
    async with db() as session:
        rows = (
            await session.execute(
                select(
                    _instances.c.user_id,
                    func.max(_instances.c.run_ended_at),
                    func.max(_instances.c.terminated_at),
                    func.count().filter(_instances.c.run_ended_at.is_(None)),
                )
                .where(_instances.c.id.in_(ids))
                .group_by(_instances.c.user_id)
            )
        ).all()
    unstopped = sum(row[3] for row in rows)
    if unstopped:
        raise RuntimeError(f"{unstopped} instances were still running {CAP_WAIT_SECONDS:.0f} s on")
    return CapResult(
        accounts=len(rows),
        to_stopped=[(row[1] - caps[row[0]]).total_seconds() for row in rows],
        to_released=[(row[2] - caps[row[0]]).total_seconds() for row in rows if row[2]],
    )


def print_metering(passes: Sequence[PassResult], cap: CapResult) -> None:
    say("metering: settlement passes in this process; the credit cap with one `computebill worker`")
    rows = [
        (
            f"settlement pass, {r.seconds_of_run} s of run",
            str(r.instances),
            str(r.charged),
            f"{r.wall_seconds * 1000:.0f}",
            f"{r.wall_seconds * 1e6 / max(r.instances, 1):.1f}",
            f"< {AIM_PASS_SECONDS:.0f} s",
            verdict(r.wall_seconds < AIM_PASS_SECONDS),
        )
        for r in passes
    ]
    rows += [
        (
            f"budgets' pass after it, {r.seconds_of_run} s",
            f"{PASS_ACCOUNTS} budgets",
            f"{r.budgets} due",
            f"{r.budget_wall_seconds * 1000:.0f}",
            "-",
            f"< {AIM_PASS_SECONDS:.0f} s",
            verdict(r.budget_wall_seconds < AIM_PASS_SECONDS),
        )
        for r in passes
    ]
    for name, values in (
        ("cap -> instances stopped (billing ends)", cap.to_stopped),
        ("cap -> machines released", cap.to_released),
    ):
        rows.append(
            (
                name,
                str(cap.accounts),
                "-",
                f"p50 {_quantile(values, 0.5) * 1000:.0f} / "
                f"p99 {_quantile(values, 0.99) * 1000:.0f} / max {max(values) * 1000:.0f}",
                "-",
                "no target",
                verdict(None),
            )
        )
    headers = ("row", "instances/accounts", "charged", "wall ms", "µs/instance", "aim", "met")
    for line in format_table(headers, rows, left={0, 3, 5, 6}):
        say(line)
    say(
        f"  passes: {PASS_ACCOUNTS} accounts x {PASS_INSTANCES_PER_ACCOUNT} instances, each pass "
        "one transaction (lock the instances, then their accounts, then one statement charging "
        "them all, then the grants spent); the ledger verified after the last. After each, the "
        "budgets' pass (every account has one): each budget's running sum brought up to date "
        "from the usage entries posted since its watermark, then those due; the first counts "
        "the accounts' whole ledgers, the later ones only the pass's entries."
    )
    say(
        f"  cap: {CAP_ACCOUNTS} accounts of {CAP_INSTANCES_PER_ACCOUNT} instances reaching their "
        f"cap ({MARGIN_SECONDS} s of burn left) {CAP_LEAD_SECONDS}-"
        f"{CAP_LEAD_SECONDS + CAP_SPREAD_SECONDS} s after the setup; latency from that second to "
        "the stop the worker recorded (the last of the account's instances), and to the "
        "machines' release by the stop jobs."
    )
    say()
