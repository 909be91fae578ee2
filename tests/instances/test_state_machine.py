"""No order of instance jobs, repeated, reordered, early or lost, moves an instance backwards, makes
one twice, or leaves one running that should not be.

Each example is one paid order (as fulfilment leaves it, its provisioning job asked for). Rules
run the jobs the services asked for through the services themselves, with the simulated provider
and a clock the test moves: provisioning, launches, looks at booting machines, expiries, the
owner's early stop, a full refund (terminate) and a dispute (suspend), and the sweep that makes up
for lost jobs. After every step each instance's history is checked against docs/architecture.md §4.
"""

from __future__ import annotations

import secrets
import uuid

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import select

from computebill.auth.models import User
from computebill.db import unit_of_work
from computebill.instances import service as instances
from computebill.instances.models import Instance, InstanceStatus
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import JobName, JobRequest, request_job
from computebill.orders import service as orders
from computebill.orders.models import OrderStatus, OrderStatusChange
from tests.support.clock import MovableClock
from tests.support.orders import add_paid_order
from tests.support.state_machines import (
    BOOT_SECONDS,
    INSTANCE_JOBS,
    STALE_AFTER,
    Database,
    InstanceView,
    JobPool,
    assert_instances,
    instances_of,
    order_of,
    run_instance_job,
    run_machine,
)

FAILING_GPU = "amd-mi250x"  # the simulated provider's launches of it fail
GPUS = ("nvidia-h100", "amd-mi300x", FAILING_GPU)
# About 18 s on a 2-core machine.
MAX_EXAMPLES = 30
STEPS = 30


class InstanceMachine(RuleBasedStateMachine):
    database: Database  # set by the test before Hypothesis makes machines

    def __init__(self) -> None:
        super().__init__()
        self.clock = MovableClock()
        self.pool = JobPool()
        self.sessions = self.database.sessions
        self.provider = SimulatedProvider(
            self.sessions,
            clock=self.clock,
            boot_seconds=BOOT_SECONDS,
            failing_gpus=frozenset({FAILING_GPU}),
        )
        self.histories: dict[uuid.UUID, list[tuple[InstanceStatus | None, InstanceStatus]]] = {}
        self.provisioned_while_paid = False
        self.may_create = False  # a provisioning job ran for the paid order since the last look
        self.stopped_by_owner: set[uuid.UUID] = set()
        self.instance_ids: list[uuid.UUID] = []

    def run(self, coroutine: object) -> None:
        self.database.loop.run(coroutine)  # type: ignore[arg-type]

    # The paid order --------------------------------------------------------------------------

    @initialize(
        lines=st.lists(
            st.tuples(st.sampled_from(GPUS), st.integers(1, 3), st.integers(1, 4)),
            min_size=1,
            max_size=3,
            unique_by=lambda line: line[0],
        )
    )
    def order_is_paid(self, lines: list[tuple[str, int, int]]) -> None:
        """A paid order of `lines` (GPU, quantity, hours), as fulfilment leaves it."""
        self.run(self._paid_order(lines))

    async def _paid_order(self, lines: list[tuple[str, int, int]]) -> None:
        now = self.clock.now()
        async with unit_of_work(self.sessions, self.pool) as db:
            user = User(
                email=f"instances-{secrets.token_hex(6)}@example.com",
                password_changed_at=now,
                email_verified_at=now,
            )
            db.add(user)
            await db.flush()
            self.user_id = user.id
            order = await add_paid_order(db, user.id, lines, now=now)
            for moved_from, moved_to in (
                (None, OrderStatus.PENDING),
                (OrderStatus.PENDING, OrderStatus.PAID),
            ):
                db.add(
                    OrderStatusChange(
                        order_id=order.id,
                        from_status=moved_from,
                        to_status=moved_to,
                        reason="state machine",
                        changed_at=now,
                    )
                )
            request_job(db, JobName.PROVISION_ORDER, str(order.id))
            self.order_id = order.id

    # Jobs: run in any order, run twice, run early, or lost ------------------------------------

    @precondition(lambda self: bool(self.pool.waiting))
    @rule(choice=st.integers(0, 63), again_later=st.booleans())
    def a_job_runs(self, choice: int, again_later: bool) -> None:
        self.run(self._run(self.pool.take(choice, keep=again_later)))

    @precondition(lambda self: bool(self.pool.waiting))
    @rule(choice=st.integers(0, 63))
    def a_job_is_lost(self, choice: int) -> None:
        self.pool.take(choice, keep=False)

    @rule()
    def provisioning_is_asked_again(self) -> None:
        self.pool.waiting.append(JobRequest(JobName.PROVISION_ORDER, (str(self.order_id),)))

    @precondition(lambda self: bool(self.instance_ids))
    @rule(choice=st.integers(0, 63))
    def an_expiry_runs_early(self, choice: int) -> None:
        """An expiry job on a clock-skewed worker, or asked for twice."""
        instance_id = self.instance_ids[choice % len(self.instance_ids)]
        self.run(self._run(JobRequest(JobName.EXPIRE_INSTANCE, (str(instance_id),))))

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 600, 3600, 4 * 3600]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @rule()
    def the_sweep_runs(self) -> None:
        self.run(self._sweep())

    async def _sweep(self) -> None:
        async with unit_of_work(self.sessions, self.pool) as db:
            await instances.sweep(db, now=self.clock.now(), stale_after=STALE_AFTER)
            ours = await db.scalars(select(Instance.id).where(Instance.order_id == self.order_id))
            wanted = {str(self.order_id), *(str(i) for i in ours)}
        self.pool.keep_only(wanted)  # the sweep looks at every order in the database

    async def _run(self, job: JobRequest) -> None:
        if job.name == JobName.PROVISION_ORDER:
            async with unit_of_work(self.sessions, self.pool) as db:
                order, _ = await order_of(db, self.order_id)
                paid = order.status in instances.OWED_INSTANCES
                await instances.create_instances(db, self.order_id, now=self.clock.now())
            self.provisioned_while_paid |= paid
            self.may_create |= paid
        elif job.name in INSTANCE_JOBS:
            await run_instance_job(self.sessions, self.pool, self.provider, self.clock, job)
        else:
            raise AssertionError(f"unexpected job {job}")

    # The owner and the payment ----------------------------------------------------------------

    @precondition(lambda self: bool(self.instance_ids))
    @rule(choice=st.integers(0, 63))
    def the_owner_stops_one(self, choice: int) -> None:
        instance_id = self.instance_ids[choice % len(self.instance_ids)]

        async def stop() -> None:
            async with unit_of_work(self.sessions, self.pool) as db:
                await instances.request_stop(
                    db, user_id=self.user_id, instance_id=instance_id, now=self.clock.now()
                )

        self.run(stop())
        self.stopped_by_owner.add(instance_id)

    @rule(disputed=st.booleans())
    def the_payment_is_undone(self, disputed: bool) -> None:
        """What `charge.refunded` (in full) or `charge.dispute.created` does to the order."""

        async def undo() -> None:
            async with unit_of_work(self.sessions, self.pool) as db:
                order = await orders.lock_order(db, self.order_id)
                assert order is not None
                to = OrderStatus.DISPUTED if disputed else OrderStatus.REFUNDED
                if orders.transition(
                    order, to, reason="state machine", now=self.clock.now(), db=db
                ):
                    if not disputed:
                        order.refunded_cents = order.total_cents
                    await instances.stop_order_instances(
                        db, order.id, reason=to.value, suspend=disputed
                    )

        self.run(undo())

    @rule()
    def everything_settles(self) -> None:
        """Every waiting job runs, a minute a round, until the sweep finds nothing left."""
        self.run(self._settle())

    async def _settle(self) -> None:
        for _ in range(30):
            batch, self.pool.waiting = self.pool.waiting, []
            for job in batch:
                await self._run(job)
            self.clock.advance(seconds=STALE_AFTER.total_seconds() + 1)
            await self._sweep()
            if not self.pool.waiting:
                break
        assert not self.pool.waiting, self.pool.waiting
        async with self.sessions() as db:
            order, lines = await order_of(db, self.order_id)
            views = await instances_of(db, self.order_id)
        now = self.clock.now()
        for view in views:
            instance = view.instance
            assert instance.status not in (InstanceStatus.PROVISIONING, InstanceStatus.STOPPING)
            if instance.status is InstanceStatus.RUNNING:
                assert order.status in instances.OWED_INSTANCES, f"running, order {order.status}"
                assert instance.expires_at is not None
                assert instance.expires_at > now, "running past its paid time"
            if instance.gpu_slug == FAILING_GPU:
                assert instance.status is not InstanceStatus.RUNNING
        if order.status in instances.OWED_INSTANCES:
            assert self.provisioned_while_paid, "the paid order was never provisioned"
            assert len(views) == sum(line.quantity for line in lines)

    # What must hold after every step ----------------------------------------------------------

    @invariant()
    def instances_moved_only_forward(self) -> None:
        if hasattr(self, "order_id"):
            self.run(self._check())

    async def _check(self) -> None:
        async with self.sessions() as db:
            order, lines = await order_of(db, self.order_id)
            order_moves = set(
                await db.scalars(
                    select(OrderStatusChange.to_status).where(
                        OrderStatusChange.order_id == self.order_id
                    )
                )
            )
            views: list[InstanceView] = await instances_of(db, self.order_id)
        assert_instances(
            views, lines, self.histories, provisioned_while_paid=self.provisioned_while_paid
        )
        known = set(self.instance_ids)
        new = [view.instance.id for view in views if view.instance.id not in known]
        assert not new or self.may_create, "instances made while the order was not paid"
        self.may_create = False
        self.instance_ids.extend(new)
        now = self.clock.now()
        for view in views:
            instance = view.instance
            reached = {to for _, to in view.history}
            # Ended only for a reason: suspended for a dispute; terminated when the paid time
            # was up, the owner asked, or the order was refunded; failed as the provider said.
            if InstanceStatus.SUSPENDED in reached:
                assert OrderStatus.DISPUTED in order_moves
            if InstanceStatus.STOPPING in reached or InstanceStatus.TERMINATED in reached:
                expired = instance.expires_at is not None and instance.expires_at <= now
                assert (
                    expired
                    or instance.id in self.stopped_by_owner
                    or OrderStatus.REFUNDED in order_moves
                ), f"{instance.id} stopped for no reason: {view.history}"
            if InstanceStatus.FAILED in reached:
                assert instance.gpu_slug == FAILING_GPU, instance.failure_reason
            if InstanceStatus.RUNNING in reached:
                assert instance.gpu_slug != FAILING_GPU
            usage = instances.usage(instance, now=now)
            assert instance.paid_cents is not None
            assert instance.paid_seconds is not None
            assert usage.remaining_seconds is not None
            assert 0 <= usage.cost_so_far_cents <= instance.paid_cents
            assert 0 <= usage.remaining_seconds <= instance.paid_seconds
        if order.status not in instances.OWED_INSTANCES and not self.provisioned_while_paid:
            assert views == []

    def teardown(self) -> None:
        """Give the simulated machines' addresses back for the next examples."""
        if not hasattr(self, "order_id"):
            return

        async def release() -> None:
            async with self.sessions() as db:
                views = await instances_of(db, self.order_id)
            for view in views:
                if view.instance.provider_id is not None:
                    await self.provider.terminate(view.instance.provider_id)

        self.run(release())


def test_no_order_of_instance_jobs_moves_an_instance_backwards(database: Database) -> None:
    InstanceMachine.database = database
    run_machine(InstanceMachine, max_examples=MAX_EXAMPLES, steps=STEPS)
