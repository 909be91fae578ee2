"""No sequence of payment events moves an order (or its instances) anywhere it may not go.

Each example is one customer's order, checked out through the real services against the Stripe
emulator. Stripe-side rules make things happen there the way they really do (card or bank
payments that settle or fail, expiry, refunds from our admin or Stripe's dashboard, disputes);
the events Stripe emitted are then delivered to our webhook inbox in any order, any number of
times, and as stale copies under new ids; processing, provisioning and instance jobs run when a
rule says so (repeated, reordered or lost, the sweeps making up for lost ones). After every step
the order and its instances are checked against docs/architecture.md §4 and what Stripe knows.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import func, select

from computebill.auth.models import User
from computebill.cart.service import add_item
from computebill.catalog.service import load_catalog, validate_configuration
from computebill.config import Settings
from computebill.db import unit_of_work
from computebill.instances import service as instances
from computebill.instances.models import Instance, InstanceStatus
from computebill.instances.provider import SimulatedProvider
from computebill.invoices import jobs as invoice_jobs
from computebill.jobs import JobContext, JobName
from computebill.orders import jobs as order_jobs
from computebill.orders.models import OrderStatus, OrderStatusChange, Refund
from computebill.payments import checkout, events, inbox, refunds
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import EventStatus, StripeEvent
from tests.support.clock import MovableClock
from tests.support.state_machines import (
    BOOT_SECONDS,
    INSTANCE_JOBS,
    LIVE,
    ORDER_FLOW,
    STALE_AFTER,
    Database,
    InstanceView,
    JobPool,
    assert_history,
    assert_instances,
    instances_of,
    order_of,
    private_database,
    run_instance_job,
    run_machine,
)
from tests.support.stripe import EmulatorProcess, payment_terms, stripe_event

STRIPE_KEY = "sk_test_order_state_machine"
GPUS = ("nvidia-h100", "nvidia-a100", "amd-mi300x")
EVENT_SWEEP_AFTER = timedelta(seconds=30)
# What can happen to an open Checkout Session, by the emulator's trigger that makes it happen.
CHECKOUT_OUTCOMES = (
    "checkout.session.completed",  # a card that pays
    "payment_intent.payment_failed",  # a declined card: the session stays open
    "checkout.session.async_payment_succeeded",  # a bank debit that settles
    "checkout.session.async_payment_failed",  # a bank debit that bounces
    "checkout.session.expired",  # nobody pays in time
)
# About 20 s on a 2-core machine; with the instance machine, both files take about 60 s.
MAX_EXAMPLES = 25
STEPS = 30
SETTLED = frozenset({EventStatus.PROCESSED, EventStatus.IGNORED})


@dataclass
class World:
    """What every example shares: the loop, the private database, and the Stripe emulator."""

    database: Database
    settings: Settings  # the database's, talking to the emulator
    gateway: StripeGateway
    stripe: httpx.AsyncClient
    seen_events: set[str]

    def run(self, coroutine: Any) -> Any:
        return self.database.loop.run(coroutine)


@pytest.fixture(scope="module")
def world(
    settings: Settings, service_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """An emulator that delivers no webhooks (the machine delivers its events), and a database
    of the module's own."""
    emulator = EmulatorProcess(Path(tmp_path_factory.mktemp("order-machine")) / "emulator")
    emulator.start()
    try:
        with private_database(settings, service_urls[0]) as database:
            own = database.settings.model_copy(
                update={
                    "stripe_secret_key": SecretStr(STRIPE_KEY),
                    "stripe_api_base": AnyHttpUrl(emulator.base_url),
                }
            )
            client = httpx.AsyncClient(
                base_url=emulator.base_url,
                headers={"authorization": f"Bearer {STRIPE_KEY}"},
                timeout=30,
            )
            try:
                yield World(database, own, StripeGateway(own), client, set())
            finally:
                database.loop.run(client.aclose())
    finally:
        emulator.stop()


@dataclass
class StripeView:
    """The session and its payment as Stripe has them now."""

    status: str
    payment_status: str
    intent_id: str | None
    charge_id: str | None
    amount: int
    amount_refunded: int
    disputed: bool


class OrderMachine(RuleBasedStateMachine):
    world: World  # set by the test before Hypothesis makes machines

    def __init__(self) -> None:
        super().__init__()
        self.clock = MovableClock()
        self.pool = JobPool()
        self.sessions = self.world.database.sessions
        self.provider = SimulatedProvider(
            self.sessions, clock=self.clock, boot_seconds=BOOT_SECONDS
        )
        self.sent: list[dict[str, Any]] = []  # every event Stripe emitted about this order
        self.stored: set[str] = set()  # ids our inbox accepted
        self.order_history: list[tuple[OrderStatus | None, OrderStatus]] = []
        self.instance_histories: dict[uuid.UUID, list[Any]] = {}
        self.provisioned_while_paid = False
        self.paid_facts: tuple[Any, ...] | None = None
        self.refunded_cents = 0
        self.stripe_view: StripeView | None = None

    # The order ------------------------------------------------------------------------------

    @initialize(
        lines=st.lists(
            st.tuples(st.sampled_from(GPUS), st.integers(1, 3), st.integers(1, 3)),
            min_size=1,
            max_size=2,
            unique_by=lambda line: line[0],
        ),
        first=st.sampled_from([None, *CHECKOUT_OUTCOMES]),
    )
    def check_out(self, lines: list[tuple[str, int, int]], first: str | None) -> None:
        """A new customer puts `lines` (GPU, quantity, hours) in the cart, checks out, and
        does `first` on Stripe's page (so that most examples get somewhere)."""
        self.order_id, self.session_id = self.world.run(self._check_out(lines))
        self.stripe_view = self.world.run(self._stripe_view())
        if first is not None:
            self.world.run(self._trigger(first))

    async def _check_out(self, lines: list[tuple[str, int, int]]) -> tuple[uuid.UUID, str]:
        now = self.clock.now()
        async with unit_of_work(self.sessions, self.pool) as db:
            user = User(
                email=f"machine-{secrets.token_hex(6)}@example.com",
                name="Machine",
                password_changed_at=now,
                email_verified_at=now,
            )
            db.add(user)
            await db.flush()
            self.user_id = user.id
            catalog = await load_catalog(db)
            for gpu, quantity, hours in lines:
                valid = validate_configuration(
                    catalog,
                    gpu=gpu,
                    gpu_count=1,
                    vcpus=12,
                    storage_gb=500,
                    hours=hours,
                    region=None,
                    quantity=quantity,
                )
                await add_item(db, user_id=user.id, catalog=catalog, valid=valid)
            prepared = await checkout.prepare_checkout(
                db, user_id=user.id, catalog=catalog, idempotency_key=None, now=now
            )
            await checkout.open_checkout(
                db,
                self.world.gateway,
                prepared.order,
                public_base_url="http://127.0.0.1:9",
                now=now,
            )
            assert prepared.order.checkout_session_id is not None
            return prepared.order.id, prepared.order.checkout_session_id

    # Stripe: what the customer, our admin and Stripe's dashboard do ----------------------------

    def _stripe_open(self) -> bool:
        return self.stripe_view is not None and self.stripe_view.status == "open"

    def _stripe_paid(self) -> bool:
        return self.stripe_view is not None and self.stripe_view.payment_status == "paid"

    def _stripe_refundable(self) -> bool:
        view = self.stripe_view
        return view is not None and self._stripe_paid() and view.amount_refunded < view.amount

    @precondition(_stripe_open)
    @rule(how=st.sampled_from(CHECKOUT_OUTCOMES))
    def customer_at_checkout(self, how: str) -> None:
        self.world.run(self._trigger(how))

    @precondition(_stripe_paid)
    @rule()
    def customer_disputes(self) -> None:
        self.world.run(self._trigger("charge.dispute.created"))

    @precondition(_stripe_refundable)
    @rule(share=st.integers(1, 100))
    def dashboard_refunds(self, share: int) -> None:
        """Someone refunds in Stripe's dashboard: `share` % of what is left (100: all of it)."""
        view = self.stripe_view
        assert view is not None
        left = view.amount - view.amount_refunded
        amount = max(1, left * share // 100)
        answer = self.world.run(
            self.world.stripe.post(
                "/v1/refunds", data={"payment_intent": view.intent_id, "amount": amount}
            )
        )
        assert answer.status_code == 200, answer.text
        self.world.run(self._collect())

    @precondition(_stripe_paid)
    @rule(amount=st.integers(1, 100_000), keyed=st.booleans())
    def admin_refunds(self, amount: int, keyed: bool) -> None:
        """Our admin asks for a refund through the service (it may refuse, so may Stripe)."""
        self.world.run(self._admin_refund(amount, secrets.token_hex(4) if keyed else None))

    async def _admin_refund(self, amount: int, key: str | None) -> None:
        allowed = False
        try:
            async with unit_of_work(self.sessions, self.pool) as db:
                order, _ = await order_of(db, self.order_id)
                refundable = order.total_cents - order.refunded_cents
                allowed = order.status in refunds.REFUNDABLE and 0 < amount <= refundable
                await refunds.request_refund(
                    db,
                    self.world.gateway,
                    order_id=self.order_id,
                    amount_cents=amount,
                    idempotency_key=key,
                )
            assert allowed, "a refund the order does not allow was sent to Stripe"
        except refunds.NotRefundable:
            assert not allowed, "a refund the order allows was refused"
        except stripe.InvalidRequestError:
            pass  # Stripe knows of refunds whose events we have not processed yet
        await self._collect()

    async def _trigger(self, event_type: str) -> None:
        answer = await self.world.stripe.post(
            "/_emulator/trigger", json={"event": event_type, "for": self.session_id}
        )
        assert answer.status_code == 200, answer.text
        await self._collect()

    async def _collect(self) -> None:
        """Take in the events Stripe emitted since the last look, and what Stripe knows now."""
        listed = (await self.world.stripe.get("/v1/events", params={"limit": 100})).json()
        new = [event for event in listed["data"] if event["id"] not in self.world.seen_events]
        for event in reversed(new):  # oldest first, as Stripe emitted them
            self.world.seen_events.add(event["id"])
            self.sent.append(event)
        self.stripe_view = await self._stripe_view()

    async def _stripe_view(self) -> StripeView:
        session = await self.world.gateway.retrieve_checkout(self.session_id)
        intent = session.get("payment_intent") or {}
        latest = intent.get("latest_charge") if isinstance(intent, dict) else None
        # Fulfilment reads the session with the charge expanded (the invoice names its card).
        charge_id = latest.get("id") if isinstance(latest, dict) else latest
        charge: dict[str, Any] = {}
        if charge_id:
            charge = (await self.world.stripe.get(f"/v1/charges/{charge_id}")).json()
        return StripeView(
            status=str(session["status"]),
            payment_status=str(session["payment_status"]),
            intent_id=intent.get("id") if isinstance(intent, dict) else None,
            charge_id=charge_id,
            amount=int(session["amount_total"]),
            amount_refunded=int(charge.get("amount_refunded") or 0),
            disputed=bool(charge.get("disputed")),
        )

    # Webhooks: delivered late, twice, out of order, or replayed -------------------------------

    @precondition(lambda self: bool(self.sent))
    @rule(choice=st.integers(0, 63))
    def stripe_delivers(self, choice: int) -> None:
        """Any event Stripe emitted, whether or not it was delivered before."""
        event = self.sent[choice % len(self.sent)]
        self.world.run(self._receive(event))

    @precondition(lambda self: bool(self.sent))
    @rule(choice=st.integers(0, 63))
    def stale_copy_arrives(self, choice: int) -> None:
        """An old event's content under a new id: our handlers, not the inbox, must see that it
        is stale."""
        event = dict(self.sent[choice % len(self.sent)])
        event["id"] = f"evt_copy_{secrets.token_hex(10)}"
        self.world.run(self._receive(event))

    @rule(
        kind=st.sampled_from(
            [
                ("checkout.session.expired", "expired", "unpaid"),
                ("checkout.session.async_payment_failed", "complete", "unpaid"),
                ("checkout.session.completed", "complete", "paid"),  # a claim Stripe disowns
            ]
        )
    )
    def a_late_event_about_the_session(self, kind: tuple[str, str, str]) -> None:
        """An event from a state the session is no longer in (or never was), as a late
        delivery or a forged one would bring: only what Stripe says now may count."""
        event_type, status, payment_status = kind
        session = {
            "id": self.session_id,
            "object": "checkout.session",
            "status": status,
            "payment_status": payment_status,
        }
        late = stripe_event(event_type, session)
        self.sent.append(late)
        self.world.run(self._receive(late))

    async def _receive(self, event: dict[str, Any]) -> None:
        """The webhook route's work after the signature check."""
        async with unit_of_work(self.sessions, self.pool) as db:
            new = await inbox.store_event(db, event, now=self.clock.now())
        assert new == (event["id"] not in self.stored)
        self.stored.add(event["id"])

    @precondition(lambda self: bool(self.stored))
    @rule(choice=st.integers(0, 63))
    def admin_replays_an_event(self, choice: int) -> None:
        event_id = sorted(self.stored)[choice % len(self.stored)]

        async def replay() -> None:
            async with unit_of_work(self.sessions, self.pool) as db:
                assert await inbox.replay_event(db, event_id)

        self.world.run(replay())

    @rule()
    def reconciliation_runs(self) -> None:
        async def reconcile() -> None:
            async with unit_of_work(self.sessions, self.pool) as db:
                await events.reconcile_order(
                    db,
                    self.world.gateway,
                    self.order_id,
                    terms=payment_terms(),
                    now=self.clock.now(),
                )

        self.world.run(reconcile())

    @rule()
    def fulfilment_is_called(self) -> None:
        """Fulfilment from outside the webhook (the success page, say)."""

        async def fulfil() -> None:
            async with unit_of_work(self.sessions, self.pool) as db:
                await events.fulfill_checkout(
                    db,
                    self.world.gateway,
                    self.session_id,
                    terms=payment_terms(),
                    now=self.clock.now(),
                )

        self.world.run(fulfil())

    # Jobs: run, run twice, or lost ---------------------------------------------------------------

    @precondition(lambda self: bool(self.pool.waiting))
    @rule(choice=st.integers(0, 63), again_later=st.booleans())
    def a_job_runs(self, choice: int, again_later: bool) -> None:
        self.world.run(self._run(self.pool.take(choice, keep=again_later)))

    @precondition(lambda self: bool(self.pool.waiting))
    @rule(choice=st.integers(0, 63))
    def a_job_is_lost(self, choice: int) -> None:
        self.pool.take(choice, keep=False)

    @rule(seconds=st.sampled_from([1, 30, 61, 600, 3600, 4 * 3600]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @rule()
    def sweeps_run(self) -> None:
        self.world.run(self._sweep())

    async def _sweep(self) -> None:
        now = self.clock.now()
        async with unit_of_work(self.sessions, self.pool) as db:
            await inbox.requeue_unprocessed_events(db, now=now, sweep_after=EVENT_SWEEP_AFTER)
            await instances.sweep(db, now=now, stale_after=STALE_AFTER)
        self.pool.keep_only(await self._our_ids())

    async def _our_ids(self) -> set[str]:
        async with self.sessions() as db:
            instance_ids = await db.scalars(
                select(Instance.id).where(Instance.order_id == self.order_id)
            )
            return {str(self.order_id), *self.stored, *(str(i) for i in instance_ids)}

    async def _unsettled_events(self) -> dict[str, EventStatus]:
        async with self.sessions() as db:
            rows = await db.execute(
                select(StripeEvent.id, StripeEvent.status).where(
                    StripeEvent.id.in_(self.stored), StripeEvent.status.not_in(SETTLED)
                )
            )
            return {row.id: row.status for row in rows}

    async def _run(self, job: Any) -> None:
        now = self.clock.now()
        if job.name == JobName.PROCESS_STRIPE_EVENT:
            async with unit_of_work(self.sessions, self.pool) as db:
                await events.process_event(
                    db, self.world.gateway, str(job.args[0]), terms=payment_terms(), now=now
                )
        elif job.name == JobName.PROVISION_ORDER:
            async with unit_of_work(self.sessions, self.pool) as db:
                order, _ = await order_of(db, self.order_id)
                paid = order.status in instances.OWED_INSTANCES
                await instances.create_instances(db, self.order_id, now=now)
            self.provisioned_while_paid |= paid
        elif job.name in (JobName.SEND_ORDER_RECEIPT, JobName.SEND_INVOICE_EMAIL):
            context = JobContext(
                settings=self.world.settings,
                sessionmaker=self.sessions,
                publisher=self.pool,
                worker_id="machine",
                clock=self.clock,
                gateway=self.world.gateway,
                provider=self.provider,
            )
            send = (
                order_jobs.send_order_receipt
                if job.name == JobName.SEND_ORDER_RECEIPT
                else invoice_jobs.send_invoice_email
            )
            await send(context, str(job.args[0]))
        elif job.name in INSTANCE_JOBS:
            await run_instance_job(self.sessions, self.pool, self.provider, self.clock, job)
        else:
            raise AssertionError(f"unexpected job {job}")

    @rule()
    def everything_settles(self) -> None:
        """Every event Stripe sent arrives, every job runs and the sweeps find nothing left: the
        order is where its last event puts it and its instances agree with it."""
        self.world.run(self._settle())

    async def _settle(self) -> None:
        for event in self.sent:
            if event["id"] not in self.stored:
                await self._receive(event)
        # A round a minute: what is waiting runs (what it asks for, such as another look at a
        # booting machine, waits for the next round), then the sweeps look for what a lost job
        # left undone (a replayed event's lost job only after ten minutes).
        for _ in range(30):
            batch, self.pool.waiting = self.pool.waiting, []
            for job in batch:
                await self._run(job)
            self.clock.advance(seconds=STALE_AFTER.total_seconds() + 1)
            await self._sweep()
            unsettled = await self._unsettled_events()
            if not self.pool.waiting and not unsettled:
                break
        assert not self.pool.waiting, self.pool.waiting
        assert not unsettled, unsettled
        async with self.sessions() as db:
            order, _lines = await order_of(db, self.order_id)
            views = await instances_of(db, self.order_id)
        ever = {to for _, to in self.order_history} | {order.status}
        if order.paid_at is not None:
            # Every refund Stripe made is on the order, whatever order its events arrived in.
            stripe = await self._stripe_view()
            assert order.refunded_cents == min(stripe.amount_refunded, order.total_cents), (
                order.refunded_cents,
                stripe,
            )
        if order.status in instances.OWED_INSTANCES:
            assert self.provisioned_while_paid, "a paid order was never provisioned"
        if ever & {OrderStatus.REFUNDED, OrderStatus.DISPUTED}:
            live = [(v.instance.id, v.instance.status) for v in views if v.instance.status in LIVE]
            assert not live, f"instances live after the order was {order.status}: {live}"
        for view in views:
            assert view.instance.status is not InstanceStatus.PROVISIONING
            if view.instance.status is InstanceStatus.RUNNING:
                assert view.instance.expires_at is not None
                assert view.instance.expires_at > self.clock.now()

    # What must hold after every step ----------------------------------------------------------

    @invariant()
    def order_moved_only_forward(self) -> None:
        if not hasattr(self, "order_id"):
            return
        self.world.run(self._check())

    async def _check(self) -> None:
        async with self.sessions() as db:
            order, lines = await order_of(db, self.order_id)
            changes = list(
                await db.scalars(
                    select(OrderStatusChange)
                    .where(OrderStatusChange.order_id == self.order_id)
                    .order_by(OrderStatusChange.id)
                )
            )
            refunds = int(
                await db.scalar(
                    select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(
                        Refund.order_id == self.order_id
                    )
                )
                or 0
            )
            views: list[InstanceView] = await instances_of(db, self.order_id)
        history = [(c.from_status, c.to_status) for c in changes]
        assert_history("order", history, ORDER_FLOW, order.status, self.order_history)
        self.order_history = history

        # Paid at most once, and what paying recorded never changes.
        paid_moves = [to for _, to in history if to is OrderStatus.PAID]
        assert len(paid_moves) <= 1, history
        was_paid = bool(paid_moves)
        assert (order.paid_at is not None) == was_paid
        if was_paid:
            facts = (order.paid_at, order.payment_intent_id, order.charge_id)
            assert self.paid_facts in (None, facts), (self.paid_facts, facts)
            self.paid_facts = facts
            view = self.stripe_view
            assert view is not None
            assert view.payment_status == "paid", "paid without a payment at Stripe"
            assert order.payment_intent_id == view.intent_id
            assert order.total_cents == view.amount

        # Refunds: never more than was paid, nor than Stripe refunded; never going down.
        assert 0 <= order.refunded_cents <= order.total_cents
        assert order.refunded_cents >= self.refunded_cents
        self.refunded_cents = order.refunded_cents
        assert refunds <= order.total_cents
        if not was_paid:
            assert order.refunded_cents == 0
            assert refunds == 0
        else:
            assert self.stripe_view is not None
            assert order.refunded_cents <= self.stripe_view.amount_refunded
            assert refunds <= self.stripe_view.amount_refunded
        if order.status is OrderStatus.REFUNDED:
            assert order.refunded_cents == order.total_cents
        if order.status is OrderStatus.PARTIALLY_REFUNDED:
            assert 0 < order.refunded_cents < order.total_cents

        # Instances only for a paid order, exactly what was bought once it was provisioned.
        if not was_paid:
            assert views == [], "instances for an order that was never paid"
        assert_instances(
            views,
            lines,
            self.instance_histories,
            provisioned_while_paid=self.provisioned_while_paid,
        )

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

        self.world.run(release())


def test_no_sequence_of_payment_events_moves_an_order_backwards(world: World) -> None:
    OrderMachine.world = world
    run_machine(OrderMachine, max_examples=MAX_EXAMPLES, steps=STEPS)
