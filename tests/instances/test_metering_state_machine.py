"""No order of top-ups (paid, repeated, out of order, refunded), grants and their expiry,
pay-as-you-go runs started and stopped, fixed-hours instances stopped early, settlement passes
(repeated, two at once, skipped, or on a clock behind), clock jumps of any size and the credit
cap's sweep and job leaves the money wrong.

A model follows every account to the millicent (its balance, its grants, each run's settled
seconds) independently of the SQL, and after every step the database must agree with it:

- every balance equals the sum of its entries (`verify_ledger`) and the model's balance;
- each run's usage entries are one contiguous cover of its settled run, and their total is
  exactly `floor(rate × S / 3600)`, S the whole seconds from `started_at` to its stop, or to the
  last settlement's `now`, capped at its safety stop (`expires_at`);
- the live balance and the burn rate are the model's;
- each grant's remainder is the model's, between 0 and its amount;
- the bound: an account last clear of its cap at `clear_at` with live balance `L0` has, at any
  later moment, live balance ≥ min(0, L0 + N) - Σ_i ceil(rate_i × d_i / 3600), N what was posted
  to it since other than usage, and d_i the whole seconds (rounded up) its run i ran after
  `clear_at` up to the first sweep that found the account at its cap. (Live balance = L0 + N -
  usage since; each run's usage over d seconds is at most ceil(rate × d / 3600); L0 > 0 unless
  the account was already below zero with nothing burning.) So a sweep that missed an account at
  its cap fails this as soon as time moves on.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.credits import service as credits
from computebill.credits.models import CreditGrant, CreditTopUp, TopUpStatus
from computebill.db import unit_of_work
from computebill.instances import metering
from computebill.instances import service as instances
from computebill.instances.metering import SECONDS_PER_HOUR, owed_millicents
from computebill.instances.models import Instance, InstanceStatus
from computebill.money import MILLICENTS_PER_CENT
from computebill.payments import events
from tests.instances.metering import add_metered, assert_usage_covers
from tests.support.orders import add_paid_order
from tests.support.state_machines import Database, JobPool, run_machine
from tests.support.stripe import payment_terms

T = TypeVar("T")

# About 30 s on a 2-core machine.
MAX_EXAMPLES = 40
STEPS = 50
USERS = 2
MARGIN_SECONDS = 60
SECOND = timedelta(seconds=1)
# Millicents an hour: half a millicent a second, whole cents, odd amounts, $130 an hour.
RATES = (1_800, 250_000, 3_600_000, 7_654_321, 13_000_000)
LIVE = (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)
CENTS = (1_000, 2_500, 10_000, 50_000)  # top-ups: $10 to $500


def whole_seconds(delta: timedelta) -> int:
    """Rounded down, also below zero: as the settlement's FLOOR(EXTRACT(EPOCH …))."""
    return delta // SECOND


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass
class Run:
    """A pay-as-you-go instance as the model sees it."""

    id: uuid.UUID
    user_id: uuid.UUID
    rate: int
    max_hours: int | None
    status: InstanceStatus = InstanceStatus.PROVISIONING
    started_at: datetime | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    settled_seconds: int = 0  # what is charged: floor(rate × this / 3600)

    def boot(self, now: datetime) -> None:
        self.status, self.started_at = InstanceStatus.RUNNING, now
        if self.max_hours is not None:
            self.expires_at = now + timedelta(hours=self.max_hours)

    def seconds_at(self, now: datetime) -> int:
        if self.status is not InstanceStatus.RUNNING or self.started_at is None:
            return self.settled_seconds
        end = min(now, self.expires_at or now)
        return max(self.settled_seconds, whole_seconds(end - self.started_at))

    def unsettled(self, now: datetime) -> int:
        settled = owed_millicents(self.rate, self.settled_seconds)
        return owed_millicents(self.rate, self.seconds_at(now)) - settled

    def settle(self, now: datetime) -> int:
        charge = self.unsettled(now)
        self.settled_seconds = self.seconds_at(now)
        return charge

    def seconds_after(self, start: datetime, end: datetime) -> int:
        """Whole seconds (rounded up) this run ran between `start` and `end`."""
        if self.started_at is None:
            return 0
        ran_to = min(t for t in (end, self.ended_at, self.expires_at) if t is not None)
        ran = ran_to - max(start, self.started_at)
        return max(ceil_div(ran // timedelta(microseconds=1), 1_000_000), 0)


@dataclass
class Grant:
    entry_id: uuid.UUID
    amount: int
    remaining: int
    expires_at: datetime | None
    created_at: datetime

    def spending_order(self) -> tuple[bool, datetime, datetime, uuid.UUID]:
        expiry = self.expires_at or self.created_at
        return (self.expires_at is None, expiry, self.created_at, self.entry_id)

    def spendable(self, now: datetime) -> bool:
        return self.remaining > 0 and (self.expires_at is None or self.expires_at > now)


@dataclass
class Account:
    user_id: uuid.UUID
    clear_at: datetime  # the last moment the account was seen clear of its cap
    balance: int = 0
    other: int = 0  # Σ postings other than usage
    grants: list[Grant] = field(default_factory=list)
    clear_live: int = 0
    clear_other: int = 0
    swept_at: datetime | None = None  # the first sweep that found it at its cap since clear_at

    def post(self, amount: int) -> None:
        self.balance += amount
        self.other += amount

    def charge(self, amount: int, now: datetime) -> None:
        """Usage charged at `now`: out of the balance, from the grants first."""
        self.balance -= amount
        left = amount
        for grant in sorted(self.grants, key=Grant.spending_order):
            if left and grant.spendable(now):
                spent = min(grant.remaining, left)
                grant.remaining -= spent
                left -= spent


@dataclass
class TopUp:
    id: uuid.UUID
    user_id: uuid.UUID
    amount_cents: int
    session_id: str
    payment_intent: str
    credited: bool = False
    refunds: dict[str, int] = field(default_factory=dict)  # refund id → cents
    reversed_refunds: set[str] = field(default_factory=set)


@dataclass
class FixedRun:
    """A fixed-hours instance, running from `started_at` for `paid_seconds`."""

    id: uuid.UUID
    user_id: uuid.UUID
    paid_cents: int
    paid_seconds: int
    order_total_cents: int
    started_at: datetime
    stopped: bool = False


class MeteringMachine(RuleBasedStateMachine):
    database: Database  # set by the test before Hypothesis makes machines
    now: datetime  # the model's clock: the `now` every step passes

    def __init__(self) -> None:
        super().__init__()
        self.sessions = self.database.sessions
        self.pool = JobPool()  # the jobs asked for are not run: the sweep is what stops here
        self.accounts: dict[uuid.UUID, Account] = {}
        self.users: list[uuid.UUID] = []
        self.runs: list[Run] = []
        self.fixed: list[FixedRun] = []
        self.top_ups: list[TopUp] = []
        self.last_pass: datetime | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.database.loop.run(coroutine)

    def unit(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self.sessions, self.pool)

    # The model's figures, as the SQL's ----------------------------------------------------------

    def runs_of(self, user_id: uuid.UUID, *statuses: InstanceStatus) -> list[Run]:
        return [r for r in self.runs if r.user_id == user_id and r.status in statuses]

    def live(self, user_id: uuid.UUID) -> int:
        running = self.runs_of(user_id, InstanceStatus.RUNNING)
        return self.accounts[user_id].balance - sum(r.unsettled(self.now) for r in running)

    def burn(self, user_id: uuid.UUID) -> int:
        return sum(r.rate for r in self.runs_of(user_id, InstanceStatus.RUNNING))

    def at_cap(self, user_id: uuid.UUID) -> bool:
        """As `accounts_at_cap`: live pay-as-you-go instances, and the live balance down to the
        margin of the burn rate."""
        if not self.runs_of(user_id, *LIVE):
            return False
        margin = ceil_div(self.burn(user_id) * MARGIN_SECONDS, SECONDS_PER_HOUR)
        return self.live(user_id) <= margin

    def settle(self, runs: list[Run]) -> dict[uuid.UUID, int]:
        charges: dict[uuid.UUID, int] = {}
        for run in runs:
            if run.status is InstanceStatus.RUNNING:
                charge = run.settle(self.now)
                if charge:
                    charges[run.user_id] = charges.get(run.user_id, 0) + charge
        for user_id, charge in charges.items():
            self.accounts[user_id].charge(charge, self.now)
        return charges

    def stop_for_credit(self, user_ids: list[uuid.UUID]) -> int:
        stopped = [r for r in self.runs if r.user_id in user_ids and r.status in LIVE]
        self.settle(stopped)
        for run in stopped:
            if run.status is InstanceStatus.RUNNING:
                run.ended_at = self.now
            run.status = InstanceStatus.STOPPING
        return len(stopped)

    def ours(self, charges: dict[uuid.UUID, int]) -> dict[uuid.UUID, int]:
        return {user_id: c for user_id, c in charges.items() if user_id in self.accounts}

    # Accounts, top-ups, grants -----------------------------------------------------------------

    @initialize(
        microseconds=st.integers(0, 999_999),
        paid=st.lists(st.sampled_from(CENTS), min_size=USERS, max_size=USERS),
        rates=st.lists(st.sampled_from(RATES), min_size=USERS, max_size=USERS),
    )
    def accounts_open(self, microseconds: int, paid: list[int], rates: list[int]) -> None:
        """Each account paid a top-up and runs an instance."""
        self.now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC) + timedelta(microseconds=microseconds)

        async def open_accounts() -> None:
            async with self.unit() as db:
                for _ in range(USERS):
                    user = User(
                        email=f"metering-{secrets.token_hex(6)}@example.com",
                        password_changed_at=self.now,
                        email_verified_at=self.now,
                    )
                    db.add(user)
                    await db.flush()
                    await credits.lock_account(db, user.id)
                    self.users.append(user.id)
                    self.accounts[user.id] = Account(user.id, clear_at=self.now)

        self.run(open_accounts())
        for who, (cents, rate) in enumerate(zip(paid, rates, strict=True)):
            self._deliver(self._open_top_up(self.users[who], cents))
            self._launch(self.users[who], rate, max_hours=None, running=True)

    def user(self, choice: int) -> uuid.UUID:
        return self.users[choice % len(self.users)]

    @rule(who=st.integers(0, USERS - 1), cents=st.sampled_from(CENTS))
    def a_top_up_is_opened(self, who: int, cents: int) -> None:
        self._open_top_up(self.user(who), cents)

    def _open_top_up(self, user_id: uuid.UUID, cents: int) -> TopUp:
        session_id, intent = f"cs_{secrets.token_hex(8)}", f"pi_{secrets.token_hex(8)}"
        top_up = TopUp(uuid.uuid4(), user_id, cents, session_id, intent)

        async def open_top_up() -> None:
            async with self.unit() as db:
                db.add(
                    CreditTopUp(
                        id=top_up.id,
                        user_id=top_up.user_id,
                        status=TopUpStatus.PENDING,
                        amount_cents=cents,
                        currency="usd",
                        refunded_cents=0,
                        checkout_session_id=top_up.session_id,
                    )
                )

        self.run(open_top_up())
        self.top_ups.append(top_up)
        return top_up

    @precondition(lambda self: bool(self.top_ups))
    @rule(choice=st.integers(0, 63))
    def a_top_up_payment_is_delivered(self, choice: int) -> None:
        """`checkout.session.completed` through the one fulfilment: any top-up, in any order,
        any number of times; each is credited once."""
        self._deliver(self.top_ups[choice % len(self.top_ups)])

    def _deliver(self, top_up: TopUp) -> None:
        session = {
            "id": top_up.session_id,
            "object": "checkout.session",
            "status": "complete",
            "payment_status": "paid",
            "amount_total": top_up.amount_cents,
            "currency": "usd",
            "metadata": {"top_up_id": str(top_up.id)},
            "payment_intent": {"id": top_up.payment_intent, "latest_charge": None},
        }

        async def deliver() -> events.Outcome:
            async with self.unit() as db:
                return await events.fulfil_session(db, session, terms=payment_terms(), now=self.now)

        outcome = self.run(deliver())
        assert outcome.acted is not top_up.credited, (outcome, top_up)
        if not top_up.credited:
            top_up.credited = True
            self.accounts[top_up.user_id].post(top_up.amount_cents * MILLICENTS_PER_CENT)

    @precondition(lambda self: bool(self.top_ups))
    @rule(choice=st.integers(0, 63), share=st.sampled_from([1, 2, 4]), again=st.booleans())
    def a_top_up_is_refunded(self, choice: int, share: int, again: bool) -> None:
        """A refund of part (or all) of what is left of a top-up, or the redelivery of an earlier
        refund (also one delivered before the top-up was credited, which posted nothing)."""
        top_up = self.top_ups[choice % len(self.top_ups)]
        if again and top_up.refunds:
            refund_id = sorted(top_up.refunds)[choice % len(top_up.refunds)]
        else:
            left = top_up.amount_cents - sum(top_up.refunds.values())
            if left <= 0:
                return
            refund_id = f"re_{secrets.token_hex(8)}"
            top_up.refunds[refund_id] = max(left // share, 1)
        cents = top_up.refunds[refund_id]

        async def refund() -> credits.Posted | None:
            async with self.unit() as db:
                locked = await credits.lock_top_up(db, top_up.id)
                assert locked is not None
                return await credits.reverse_top_up(
                    db,
                    locked,
                    amount_cents=cents,
                    idempotency_key=f"top_up_reversal:{refund_id}",
                    now=self.now,
                )

        posted = self.run(refund())
        assert (posted is not None) is top_up.credited
        posts = top_up.credited and refund_id not in top_up.reversed_refunds
        assert posted is None or posted.created is posts
        if posts:
            top_up.reversed_refunds.add(refund_id)
            self.accounts[top_up.user_id].post(-cents * MILLICENTS_PER_CENT)

    @rule(
        who=st.integers(0, USERS - 1),
        cents=st.sampled_from([1, 300, 5_000]),
        expires_in=st.none() | st.integers(1, 6 * 3600),
        repeated=st.booleans(),
    )
    def a_grant_is_posted(
        self, who: int, cents: int, expires_in: int | None, repeated: bool
    ) -> None:
        user_id = self.user(who)
        key = f"grant:{uuid.uuid4()}"
        expires_at = None if expires_in is None else self.now + timedelta(seconds=expires_in)

        async def grant() -> credits.PostedGrant:
            async with self.unit() as db:
                return await credits.grant_credit(
                    db,
                    user_id=user_id,
                    amount_millicents=cents * MILLICENTS_PER_CENT,
                    idempotency_key=key,
                    expires_at=expires_at,
                    now=self.now,
                )

        posted = self.run(grant())
        if repeated:  # a retried request: the same grant, posted once
            again = self.run(grant())
            assert not again.posted.created
            assert again.posted.entry.id == posted.posted.entry.id
        amount = cents * MILLICENTS_PER_CENT
        account = self.accounts[user_id]
        account.post(amount)
        account.grants.append(Grant(posted.posted.entry.id, amount, amount, expires_at, self.now))

    @rule()
    def grants_expire(self) -> None:
        async def expire() -> list[credits.ExpiredGrant]:
            async with self.unit() as db:
                return await credits.expire_due_grants(db, now=self.now)

        expired = self.run(expire())
        expected = {}
        for account in self.accounts.values():
            for grant in account.grants:
                if grant.remaining > 0 and grant.expires_at and grant.expires_at <= self.now:
                    expected[grant.entry_id] = grant.remaining
                    account.post(-grant.remaining)
                    grant.remaining = 0
        ours = {
            e.grant_entry_id: e.expired_millicents for e in expired if e.user_id in self.accounts
        }
        assert ours == expected

    # Instances -----------------------------------------------------------------------------------

    @rule(
        who=st.integers(0, USERS - 1),
        rate=st.sampled_from(RATES),
        max_hours=st.none() | st.integers(1, 3),
        running=st.booleans(),
    )
    def a_pay_as_you_go_instance_is_launched(
        self, who: int, rate: int, max_hours: int | None, running: bool
    ) -> None:
        """Made as a launch leaves it (provisioning), or as its boot does (running from now)."""
        self._launch(self.user(who), rate, max_hours=max_hours, running=running)

    def _launch(
        self, user_id: uuid.UUID, rate: int, *, max_hours: int | None, running: bool
    ) -> None:
        run = Run(uuid.uuid4(), user_id, rate, max_hours)
        if running:
            run.boot(self.now)

        async def launch() -> uuid.UUID:
            async with self.unit() as db:
                instance = await add_metered(
                    db, user_id, rate=rate, started_at=run.started_at, expires_at=run.expires_at
                )
                instance.max_hours = max_hours
                return instance.id

        run.id = self.run(launch())
        self.runs.append(run)

    @precondition(lambda self: any(r.status is InstanceStatus.PROVISIONING for r in self.runs))
    @rule(choice=st.integers(0, 63))
    def an_instance_boots(self, choice: int) -> None:
        """As `instances._record_look` does when its machine runs: the metering starts now."""
        waiting = [r for r in self.runs if r.status is InstanceStatus.PROVISIONING]
        run = waiting[choice % len(waiting)]
        run.boot(self.now)

        async def boot() -> None:
            async with self.unit() as db:
                await db.execute(
                    update(Instance)
                    .where(Instance.id == run.id)
                    .values(
                        status=InstanceStatus.RUNNING,
                        started_at=run.started_at,
                        expires_at=run.expires_at,
                    )
                )

        self.run(boot())

    @precondition(lambda self: bool(self.runs))
    @rule(choice=st.integers(0, 63))
    def the_owner_stops_one(self, choice: int) -> None:
        run = self.runs[choice % len(self.runs)]

        async def stop() -> None:
            async with self.unit() as db:
                await instances.request_stop(
                    db, user_id=run.user_id, instance_id=run.id, now=self.now
                )

        self.run(stop())
        if run.status in LIVE:
            if run.status is InstanceStatus.RUNNING:
                run.ended_at = self.now
            self.settle([run])
            run.status = InstanceStatus.STOPPING

    @rule(who=st.integers(0, USERS - 1), hours=st.integers(1, 3))
    def a_fixed_hours_instance_runs(self, who: int, hours: int) -> None:
        user_id = self.user(who)

        async def paid_and_running() -> FixedRun:
            async with self.unit() as db:
                order = await add_paid_order(db, user_id, [("nvidia-h100", 1, hours)], now=self.now)
                await instances.create_instances(db, order.id, now=self.now)
                instance = await db.scalar(select(Instance).where(Instance.order_id == order.id))
                assert instance is not None
                assert instance.paid_seconds is not None
                assert instance.paid_cents is not None
                instance.status = InstanceStatus.RUNNING
                instance.started_at = self.now
                instance.expires_at = self.now + timedelta(seconds=instance.paid_seconds)
                return FixedRun(
                    instance.id,
                    user_id,
                    instance.paid_cents,
                    instance.paid_seconds,
                    order.total_cents,
                    self.now,
                )

        fixed = self.run(paid_and_running())
        self.fixed.append(fixed)

    @precondition(lambda self: bool(self.fixed))
    @rule(choice=st.integers(0, 63))
    def a_fixed_hours_instance_is_stopped_early(self, choice: int) -> None:
        """Its unused seconds come back once: floor(paid × unused / paid seconds)."""
        fixed = self.fixed[choice % len(self.fixed)]

        async def stop() -> None:
            async with self.unit() as db:
                await instances.request_stop(
                    db, user_id=fixed.user_id, instance_id=fixed.id, now=self.now
                )

        self.run(stop())
        if not fixed.stopped:
            fixed.stopped = True
            used = min(whole_seconds(self.now - fixed.started_at), fixed.paid_seconds)
            unused = fixed.paid_seconds - used
            owed = fixed.paid_cents * MILLICENTS_PER_CENT * unused // fixed.paid_seconds
            given = min(owed, fixed.order_total_cents * MILLICENTS_PER_CENT)
            self.accounts[fixed.user_id].post(given)

    # Time and settlement ----------------------------------------------------------------------

    @rule(
        seconds=st.sampled_from([0, 1, 2, 59, 61, 600, 3599, 3600 * 3, 3600 * 7])
        | st.integers(0, 4 * 3600),
        microseconds=st.just(0) | st.integers(0, 999_999),
    )
    def time_passes(self, seconds: int, microseconds: int) -> None:
        """A jump of any size; a settlement pass skipped is one that did not run meanwhile."""
        self.now += timedelta(seconds=seconds, microseconds=microseconds)

    def expiries_ahead(self) -> list[datetime]:
        return sorted(
            g.expires_at
            for a in self.accounts.values()
            for g in a.grants
            if g.expires_at is not None and g.expires_at > self.now
        )

    @precondition(lambda self: bool(self.expiries_ahead()))
    @rule(choice=st.integers(0, 63))
    def the_clock_reaches_a_grants_expiry(self, choice: int) -> None:
        """To the microsecond: a pass then must not spend the grant, and its expiry takes it."""
        ahead = self.expiries_ahead()
        self.now = ahead[choice % len(ahead)]

    async def _pass(self, now: datetime) -> metering.Settlement:
        async with self.unit() as db:
            return await metering.settle_all(db, now=now)

    @rule()
    def a_settlement_pass_runs(self) -> None:
        settled = self.run(self._pass(self.now))
        assert self.ours(settled.charges) == self.settle(self.runs)
        self.last_pass = self.now

    @rule()
    def two_settlement_passes_run_at_once(self) -> None:
        """Two workers' passes in two transactions at the same moment: each instance is charged by
        one of them (the other skips what the first holds), or by both one after the other, the
        second finding nothing more to charge."""

        async def both() -> list[metering.Settlement]:
            return list(await asyncio.gather(self._pass(self.now), self._pass(self.now)))

        passes = self.run(both())
        charged: dict[uuid.UUID, int] = {}
        for settled in passes:
            for user_id, charge in self.ours(settled.charges).items():
                charged[user_id] = charged.get(user_id, 0) + charge
        assert charged == self.settle(self.runs)
        self.last_pass = self.now

    @precondition(lambda self: self.last_pass is not None)
    @rule(behind=st.integers(0, 3 * 3600))
    def a_pass_runs_on_a_clock_behind(self, behind: int) -> None:
        """A worker whose clock is behind the last pass: it charges nothing."""
        assert self.last_pass is not None
        at = self.last_pass - timedelta(seconds=behind)
        settled = self.run(self._pass(at))
        assert self.ours(settled.charges) == {}

    # The credit cap ------------------------------------------------------------------------------

    @rule()
    def the_cap_sweep_runs(self) -> None:
        capped = [user_id for user_id in self.users if self.at_cap(user_id)]

        async def sweep() -> int:
            async with self.unit() as db:
                return await instances.sweep_credit_caps(
                    db, margin_seconds=MARGIN_SECONDS, now=self.now
                )

        stopped = self.run(sweep())
        for user_id in capped:
            account = self.accounts[user_id]
            account.swept_at = account.swept_at or self.now
        assert stopped == self.stop_for_credit(capped)

    @rule(who=st.integers(0, USERS - 1))
    def the_cap_job_runs(self, who: int) -> None:
        """`enforce_credit_cap`: stops the account's instances when the margin is less than a
        second of its burn away."""
        user_id = self.user(who)
        burn, live = self.burn(user_id), self.live(user_id)
        margin = ceil_div(burn * MARGIN_SECONDS, SECONDS_PER_HOUR)
        due = live <= 0 if burn == 0 else (live - margin) * SECONDS_PER_HOUR < burn

        async def enforce() -> int:
            async with self.unit() as db:
                return await instances.enforce_credit_cap(
                    db, user_id, margin_seconds=MARGIN_SECONDS, now=self.now
                )

        stopped = self.run(enforce())
        assert stopped == (self.stop_for_credit([user_id]) if due else 0)

    # What must hold after every step ---------------------------------------------------------

    @invariant()
    def the_money_is_exact(self) -> None:
        if self.users:
            self.run(self._check())
            self._note_caps()

    async def _check(self) -> None:
        async with self.sessions() as db:
            assert [m for m in await credits.verify_ledger(db) if m.user_id in self.accounts] == []
            for user_id, account in self.accounts.items():
                assert await credits.balance(db, user_id) == account.balance, user_id
                figures = await metering.live_figures(db, user_id, now=self.now)
                assert figures.live_balance_millicents == self.live(user_id)
                assert figures.burn_millicents_per_hour == self.burn(user_id)
                grants = {
                    g.grant_entry_id: g.remaining_millicents
                    for g in await db.scalars(
                        select(CreditGrant).where(CreditGrant.user_id == user_id)
                    )
                }
                assert grants == {g.entry_id: g.remaining for g in account.grants}
                assert all(0 <= g.remaining <= g.amount for g in account.grants)
                assert self.live(user_id) >= self._lowest_allowed(account), (
                    f"{user_id} went below the bound"
                )
            for run in self.runs:
                charged = await assert_usage_covers(db, run.id)
                assert charged == owed_millicents(run.rate, run.settled_seconds), run
                instance = await db.get(Instance, run.id, populate_existing=True)
                assert instance is not None
                assert (instance.status, instance.run_ended_at) == (run.status, run.ended_at)

    def _lowest_allowed(self, account: Account) -> int:
        """The bound (see the module's docstring)."""
        if not self.at_cap(account.user_id):
            return self.live(account.user_id)  # clear: nothing to bound
        until = account.swept_at or self.now
        overrun = sum(
            ceil_div(run.rate * run.seconds_after(account.clear_at, until), SECONDS_PER_HOUR)
            for run in self.runs
            if run.user_id == account.user_id
        )
        posted = account.other - account.clear_other
        return min(0, account.clear_live + posted) - overrun

    def _note_caps(self) -> None:
        for user_id, account in self.accounts.items():
            if not self.at_cap(user_id):
                account.clear_at, account.swept_at = self.now, None
                account.clear_live, account.clear_other = self.live(user_id), account.other

    def teardown(self) -> None:
        """End this example's runs, so the next example's passes and sweeps see none of them."""
        if not self.users:
            return

        async def end_runs() -> None:
            async with self.unit() as db:
                await db.execute(
                    update(Instance)
                    .where(Instance.user_id.in_(self.users), Instance.status.in_(LIVE))
                    .values(status=InstanceStatus.STOPPING)
                )

        self.run(end_runs())


def test_no_order_of_payments_runs_and_passes_gets_the_money_wrong(database: Database) -> None:
    MeteringMachine.database = database
    run_machine(MeteringMachine, max_examples=MAX_EXAMPLES, steps=STEPS)
