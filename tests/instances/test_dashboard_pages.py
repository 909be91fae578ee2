"""The dashboard: a signed-in user's instances with their status, address, SSH command and paid
time, kept live while they change, and ended early by their owner only. Instances come from a
paid order through the real services and the simulated provider, against the test database."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.auth.models import User
from computebill.config import Settings
from computebill.credits.models import CreditEntry, EntryKind
from computebill.credits.service import balance
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances import service
from computebill.instances.jobs import send_expiry_warnings
from computebill.instances.models import Instance, InstanceStatus
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import take_requested_jobs
from computebill.mail.models import OutboxEmail
from computebill.money import MILLICENTS_PER_CENT, format_money
from computebill.orders.models import Order, OrderLine, OrderStatus
from tests.credits.ledger import post
from tests.support.jobs import RecordingPublisher, job_context
from tests.support.mailbox import emails_to
from tests.support.markup import Element, elements, the
from tests.support.orders import add_paid_order
from tests.support.pages import Browser

FAILING_GPU = "amd-mi250x"
POLLING = 'hx-trigger="every 3s"'
T = TypeVar("T")
TEMPLATES = Path(__file__).parents[2] / "src/computebill/web/templates"


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


class Fleet:
    """A user's paid order and its instances, driven through the instance services by hand (the
    jobs they would request are dropped: the test plays the worker)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], browser: Browser) -> None:
        self.sessions = sessions
        self.clock = browser.clock  # the app's clock: pages and provider agree on `now`
        self.provider = SimulatedProvider(
            sessions,
            clock=self.clock,
            boot_seconds=(0, 0),
            failing_gpus=frozenset({FAILING_GPU}),
        )

    async def paid_order(
        self, email: str, *lines: tuple[str, int, int], with_instances: bool = True
    ) -> uuid.UUID:
        """A paid order of (gpu slug, quantity, hours) lines, as fulfilment leaves one, and its
        instances (provisioning) unless the provisioning job is yet to run."""
        async with unit_of_work(self.sessions) as db:
            user_id = await db.scalar(select(User.id).where(User.email == email))
            assert user_id is not None
            order = await add_paid_order(db, user_id, lines, now=self.clock.now())
            if with_instances:
                await self.create_instances(db, order.id)
            return order.id

    async def create_instances(self, db: AsyncSession, order_id: uuid.UUID) -> None:
        """What the provisioning job does."""
        await service.create_instances(db, order_id, now=self.clock.now())
        take_requested_jobs(db)

    async def instances(self, order_id: uuid.UUID) -> list[Instance]:
        async with unit_of_work(self.sessions) as db:
            found = await db.scalars(
                select(Instance).where(Instance.order_id == order_id).order_by(Instance.name)
            )
            return list(found)

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[AsyncSession]:
        """A unit of work whose requested jobs are dropped."""
        async with unit_of_work(self.sessions) as db:
            yield db
            take_requested_jobs(db)

    async def boot(self, order_id: uuid.UUID) -> list[Instance]:
        """Launch every instance and look at it once: running, or failed for the failing GPU."""
        for instance in await self.instances(order_id):
            await service.launch(self.unit, self.provider, instance.id, now=self.clock.now())
            await service.poll(
                self.unit,
                self.provider,
                instance.id,
                now=self.clock.now(),
                deadline=timedelta(minutes=5),
            )
        return await self.instances(order_id)

    async def finish_stopping(self, instance_id: uuid.UUID, now: datetime) -> None:
        """What the stop job does."""
        await service.stop(
            self.unit, self.provider, instance_id, reason="stopped by its owner", now=now
        )


@pytest.fixture
def fleet(sessions: async_sessionmaker[AsyncSession], browser: Browser) -> Fleet:
    return Fleet(sessions, browser)


def row_of(html: str, instance: Instance) -> Element:
    rows = elements(html, "data-instance-row")
    [row] = [r for r in rows if r.attrs["data-instance-id"] == str(instance.id)]
    return row


def progress_of(row: Element) -> dict[str, str | None]:
    [bar] = row.find("progress")
    return bar


async def expiry_warnings_to(settings: Settings, email: str) -> list[OutboxEmail]:
    found = await emails_to(settings, email)
    return [sent for sent in found if sent.dedupe_key.startswith("expiry_warning:")]


async def test_anonymous_visitors_are_sent_to_log_in(browser: Browser) -> None:
    for path in ("/dashboard", "/dashboard/instances"):
        answer = await browser.page(path)
        assert answer.status_code == 303
        # The fragment sends them back to the whole page, not to itself.
        assert answer.headers["location"] == "/login?next=/dashboard"


async def test_a_user_without_instances_is_pointed_to_the_catalog(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    answer = await browser.page("/dashboard")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    empty = the(answer.text, "data-empty-state")
    assert "No instances yet" in empty.text
    assert empty.find("a", href="/")
    assert elements(answer.text, "data-instance-row") == []
    assert POLLING not in answer.text


async def test_a_paid_order_awaiting_its_instances_keeps_the_list_polling(
    browser: Browser, fleet: Fleet, email: str
) -> None:
    """Straight after paying, the provisioning job may not have created the instances yet: the
    page says they are coming and polls until they are listed."""
    await browser.sign_up(email)
    order_id = await fleet.paid_order(email, ("nvidia-h100", 1, 2), with_instances=False)

    page = await browser.page("/dashboard")
    assert elements(page.text, "data-instance-row") == []
    assert "being created" in the(page.text, "data-instances-on-the-way").text
    assert elements(page.text, "data-empty-state") == []
    assert POLLING in page.text

    async with unit_of_work(fleet.sessions) as db:
        await fleet.create_instances(db, order_id)
    fragment = await browser.page("/dashboard/instances")
    [row] = elements(fragment.text, "data-instance-row")
    assert row.attrs["data-instance-status"] == "provisioning"
    assert elements(fragment.text, "data-instances-on-the-way") == []


async def test_a_payment_being_confirmed_keeps_the_list_polling_until_its_instances_appear(
    browser: Browser, fleet: Fleet, email: str
) -> None:
    """Straight from the success page, Stripe's webhook may not have arrived: the order is still
    pending with its checkout open. The list polls through the payment's confirmation and the
    provisioning job, until the instances are listed."""
    await browser.sign_up(email)
    order_id = await fleet.paid_order(email, ("nvidia-h100", 1, 2), with_instances=False)
    opened = fleet.clock.now()
    async with unit_of_work(fleet.sessions) as db:
        order = await db.get(Order, order_id)
        assert order is not None
        order.status, order.paid_at = OrderStatus.PENDING, None
        order.checkout_session_id = f"cs_test_{secrets.token_hex(8)}"
        order.checkout_expires_at = opened + timedelta(minutes=30)

    page = await browser.page("/dashboard")
    assert "Waiting for your payment" in the(page.text, "data-awaiting-payment").text
    assert elements(page.text, "data-empty-state") == []
    assert POLLING in page.text

    async with unit_of_work(fleet.sessions) as db:  # the webhook: paid, instances to follow
        order = await db.get(Order, order_id)
        assert order is not None
        order.status, order.paid_at = OrderStatus.PAID, fleet.clock.now()
    fragment = await browser.page("/dashboard/instances")
    assert "being created" in the(fragment.text, "data-instances-on-the-way").text
    assert POLLING in fragment.text

    async with unit_of_work(fleet.sessions) as db:
        await fleet.create_instances(db, order_id)
    fragment = await browser.page("/dashboard/instances")
    [row] = elements(fragment.text, "data-instance-row")
    assert row.attrs["data-instance-status"] == "provisioning"
    assert elements(fragment.text, "data-awaiting-payment") == []
    assert POLLING in fragment.text  # now because it is provisioning


async def test_instances_made_between_the_lists_reads_are_shown_or_still_awaited(
    browser: Browser, fleet: Fleet, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list reads the instances and whether more are coming in two statements, and the
    provisioning job can commit between them. Whichever it reads first, the page shows the new
    instances or keeps polling for them: never "No instances yet" for a paid order."""
    await browser.sign_up(email)
    order_id = await fleet.paid_order(email, ("nvidia-h100", 1, 2), with_instances=False)
    provisioned = False

    def then_provision(read: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def read_then_provision(*args: Any, **kwargs: Any) -> T:
            nonlocal provisioned
            found = await read(*args, **kwargs)
            if not provisioned:  # the job commits right after the first read
                provisioned = True
                async with unit_of_work(fleet.sessions) as db:
                    await fleet.create_instances(db, order_id)
            return found

        return read_then_provision

    monkeypatch.setattr(service, "list_instances", then_provision(service.list_instances))
    monkeypatch.setattr(service, "instances_expected", then_provision(service.instances_expected))
    page = await browser.page("/dashboard")
    assert provisioned
    assert elements(page.text, "data-empty-state") == []
    assert POLLING in page.text


async def test_an_extension_being_paid_says_the_stop_time_follows_not_new_machines(
    browser: Browser, fleet: Fleet, email: str
) -> None:
    """Paying for more hours makes no machine: while its payment is confirmed and then applied,
    the list says the new stop time is coming (and keeps polling), not that instances are."""
    await browser.sign_up(email)
    [instance] = await fleet.boot(await fleet.paid_order(email, ("nvidia-h100", 1, 2)))
    assert instance.expires_at is not None
    async with fleet.unit() as db:  # the extension's order, its checkout open (as checkout makes)
        order = await add_paid_order(
            db, instance.user_id, [("nvidia-h100", 1, 3)], now=fleet.clock.now()
        )
        [line] = await db.scalars(select(OrderLine).where(OrderLine.order_id == order.id))
        line.extends_instance_id, line.extends_instance_name = instance.id, instance.name
        order.status, order.paid_at = OrderStatus.PENDING, None
        order.checkout_session_id = f"cs_test_{secrets.token_hex(8)}"
        order.checkout_expires_at = fleet.clock.now() + timedelta(minutes=30)
        extension_id = order.id

    def extension_note(html: str) -> str:
        assert elements(html, "data-awaiting-payment") == []
        assert elements(html, "data-instances-on-the-way") == []
        assert POLLING in html
        return the(html, "data-extension-on-the-way").text

    expected = (
        "Once the payment for your extension is confirmed, the machine's new stop time shows here."
    )
    assert extension_note((await browser.page("/dashboard")).text) == expected
    async with fleet.unit() as db:  # the webhook: paid; the provisioning job is yet to apply it
        paid = await db.get(Order, extension_id)
        assert paid is not None
        paid.status, paid.paid_at = OrderStatus.PAID, fleet.clock.now()
    assert extension_note((await browser.page("/dashboard/instances")).text) == expected

    async with fleet.unit() as db:
        await fleet.create_instances(db, extension_id)
    fragment = await browser.page("/dashboard/instances")
    assert elements(fragment.text, "data-extension-on-the-way") == []
    assert POLLING not in fragment.text  # a running fixed-hours machine changes on its own no more
    later = instance.expires_at + timedelta(hours=3)
    assert f"{later:%Y-%m-%d %H:%M} UTC" in row_of(fragment.text, instance).text


async def test_a_checkout_left_open_polls_only_until_it_expires(
    browser: Browser, fleet: Fleet, email: str
) -> None:
    await browser.sign_up(email)
    order_id = await fleet.paid_order(email, ("nvidia-h100", 1, 2), with_instances=False)
    async with unit_of_work(fleet.sessions) as db:
        order = await db.get(Order, order_id)
        assert order is not None
        order.status, order.paid_at = OrderStatus.PENDING, None
        order.checkout_session_id = f"cs_test_{secrets.token_hex(8)}"
        order.checkout_expires_at = fleet.clock.now() + timedelta(minutes=30)
    assert POLLING in (await browser.page("/dashboard")).text

    fleet.clock.advance(minutes=30)
    page = await browser.page("/dashboard")
    assert "No instances yet" in the(page.text, "data-empty-state").text
    assert POLLING not in page.text


async def test_the_owner_sees_each_instance_live_until_it_settles(
    browser: Browser, fleet: Fleet, email: str
) -> None:
    await browser.sign_up(email)
    order_id = await fleet.paid_order(email, ("nvidia-h100", 2, 5), (FAILING_GPU, 1, 1))

    page = await browser.page("/dashboard")
    rows = elements(page.text, "data-instance-row")
    assert [row.attrs["data-instance-status"] for row in rows] == ["provisioning"] * 3
    assert elements(page.text, "data-ssh-command") == []
    # Grouped under the order's reference, which leads to the order.
    reference = the(page.text, "data-order-reference")
    assert reference.text == str(order_id)[:8]
    assert reference.attrs["href"] == f"/account/orders/{order_id}"
    # The list polls itself while anything is provisioning.
    container = the(page.text, "data-instances")
    assert container.attrs["hx-get"] == "/dashboard/instances"
    assert container.attrs["hx-trigger"] == "every 3s"
    assert (await browser.page("/dashboard/instances")).text.count(POLLING) == 1

    instances = await fleet.boot(order_id)
    assert sorted(i.status for i in instances) == [
        InstanceStatus.FAILED,
        InstanceStatus.RUNNING,
        InstanceStatus.RUNNING,
    ]
    fragment = await browser.page("/dashboard/instances")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text  # the list alone, for htmx to swap in
    assert POLLING not in fragment.text  # everything settled: the polling stops
    # The command to copy, in the element carrying it, for each running instance.
    assert sorted(e.text for e in elements(fragment.text, "data-ssh-command")) == sorted(
        f"ssh ubuntu@{i.ip_address}" for i in instances if i.status is InstanceStatus.RUNNING
    )
    for instance in instances:
        row = row_of(fragment.text, instance)
        assert row.attrs["data-instance-status"] == instance.status.value
        assert instance.name in row.text
        assert "2 × " in row.text
        assert "24 vCPUs" in row.text
        assert "500 GB" in row.text
        assert "us-east-1" in row.text
        if instance.status is InstanceStatus.RUNNING:
            assert instance.ip_address is not None
            assert instance.ip_address in row.text
            command = f"ssh ubuntu@{instance.ip_address}"
            assert command in row.text
            assert "data-ssh-command" in row.find("code", id=f"ssh-{instance.id}")[0]
            assert row.find("button", type="button", **{"data-copy": f"ssh-{instance.id}"})
            assert "Copy" in row.text
            assert row.find("button", type="submit")  # Terminate
            assert progress_of(row)["value"] == "100"  # the clock has not started
        else:
            assert "the host failed its health check during boot" in row.text
            assert not row.find("code")
            assert "Terminate" not in row.text

    # An hour later: a fifth of the paid time and of the price is used; the bar shows the rest.
    browser.clock.advance(hours=1)
    page = await browser.page("/dashboard")
    assert "copy.js" in page.text
    running = next(i for i in instances if i.status is InstanceStatus.RUNNING)
    row = row_of(page.text, running)
    bar = progress_of(row)
    assert (bar["max"], bar["value"]) == ("100", "80")
    assert bar["aria-label"] == "Paid time left: 80%"
    assert "4 h 00 min left of 5 h 00 min" in row.text
    assert "$6.68 of $33.40" in row.text
    copy_script = await browser.page("/static/copy.js")
    assert copy_script.status_code == 200
    assert "navigator.clipboard" in copy_script.text


async def test_the_owner_terminates_an_instance_after_confirming(
    browser: Browser, fleet: Fleet, email: str
) -> None:
    await browser.sign_up(email)
    order_id = await fleet.paid_order(email, ("nvidia-h200", 2, 3))
    first, second = await fleet.boot(order_id)
    path = f"/dashboard/instances/{first.id}/terminate"

    # The button asks first, naming its machine: a confirmation page without JavaScript, the
    # same panel above the list with htmx (outside the list, which polling replaces).
    page = await browser.page("/dashboard")
    [form] = [f for f in row_of(page.text, first).find("form") if f.get("action") == path]
    assert form["method"] == "get"
    assert (form["hx-get"], form["hx-target"]) == (path, "#terminate-panel")
    [button] = row_of(page.text, first).find("button", id=f"terminate-{first.id}")
    assert button["aria-label"] == f"Terminate {first.name}"
    assert the(page.text, "aria-live").attrs["id"] == "terminate-panel"
    assert "terminate.js" in page.text

    # An hour of the three paid is used: the confirmation says what becomes of disk and money.
    browser.clock.advance(hours=1)
    confirm = await browser.page(path)
    assert confirm.status_code == 200
    panel = the(confirm.text, "data-terminate-panel")
    assert f"Terminate {first.name}?" in panel.text
    assert "its disk is erased" in the(confirm.text, "data-terminate-data").text
    money = the(confirm.text, "data-terminate-money")
    assert money.attrs["data-terminate-money"] == "fixed_hours"
    assert first.paid_cents is not None
    unused = first.paid_cents * 2 // 3  # two of the three paid hours
    assert f"comes back to your credit balance: {format_money(unused)}" in money.text
    assert "not refunded to your card" in money.text
    assert panel.find("button", type="submit")
    assert f"Terminate {first.name}" in the(confirm.text, "data-terminate-confirm").text
    assert "Keep it running" in panel.text
    assert the(confirm.text, "data-keep-running").attrs["href"] == "/dashboard"
    fragment = await browser.http.get(path, headers={"hx-request": "true"})
    assert "<html" not in fragment.text
    assert the(fragment.text, "data-terminate-panel").text == panel.text
    assert [i.status for i in await fleet.instances(order_id)] == [InstanceStatus.RUNNING] * 2

    answer = await browser.submit(path, form_page=path)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard"
    page = await browser.page("/dashboard")
    assert row_of(page.text, first).attrs["data-instance-status"] == "stopping"
    assert row_of(page.text, second).attrs["data-instance-status"] == "running"
    assert "Terminate" not in row_of(page.text, first).text
    assert POLLING in page.text  # stopping is on its way somewhere: watch it
    async with fleet.unit() as db:
        credited = await db.scalar(
            select(CreditEntry.amount_millicents).where(
                CreditEntry.instance_id == first.id, CreditEntry.kind == EntryKind.UNUSED_TIME
            )
        )
    assert credited is not None
    assert credited // MILLICENTS_PER_CENT == unused  # what the confirmation said

    await fleet.finish_stopping(first.id, browser.clock.now())
    fragment = await browser.page("/dashboard/instances")
    assert row_of(fragment.text, first).attrs["data-instance-status"] == "terminated"
    assert POLLING not in fragment.text
    # Ended, its confirmation page says there is nothing to terminate.
    assert (
        "nothing to terminate" in the((await browser.page(path)).text, "data-terminate-panel").text
    )

    # With htmx: the refreshed list comes back in place, the CSRF token in the header, and the
    # confirmation panel is emptied out of band.
    answer = await browser.http.post(
        f"/dashboard/instances/{second.id}/terminate",
        headers={"hx-request": "true", "x-csrf-token": browser.csrf_token},
    )
    assert answer.status_code == 200
    assert row_of(answer.text, second).attrs["data-instance-status"] == "stopping"
    assert POLLING in answer.text
    [closed] = [
        e for e in elements(answer.text, "hx-swap-oob") if e.attrs["id"] == "terminate-panel"
    ]
    assert closed.text == ""
    statuses = {i.id: i.status for i in await fleet.instances(order_id)}
    assert statuses == {first.id: InstanceStatus.TERMINATED, second.id: InstanceStatus.STOPPING}


def test_no_template_asks_with_a_browser_dialog() -> None:
    """Confirmations are in the page (CSP allows no inline script, and a dialog names nothing
    the page does not)."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert "hx-confirm" not in text, template.name
        assert "confirm(" not in text, template.name


async def test_a_fixed_hours_machine_in_its_last_hour_is_warned_of(
    browser: Browser, fleet: Fleet, email: str, settings: Settings
) -> None:
    await browser.sign_up(email)
    order_id = await fleet.paid_order(email, ("nvidia-a100", 1, 2))
    [instance] = await fleet.boot(order_id)
    assert instance.expires_at is not None
    context = replace(
        job_context(settings, fleet.sessions, RecordingPublisher()), clock=browser.clock
    )

    # 61 minutes before it stops: no warning yet, on the page or by e-mail.
    browser.clock.advance(hours=1, minutes=-1)
    page = await browser.page("/dashboard")
    assert elements(page.text, "data-expiry-warning") == []
    await send_expiry_warnings(context)
    assert await expiry_warnings_to(settings, email) == []

    browser.clock.advance(minutes=2)  # 59 minutes left
    page = await browser.page("/dashboard")
    warning = the(page.text, "data-expiry-warning")
    assert warning.text == "Stops in 59 min; its disk will be erased. Extend it to keep it running."
    assert warning.text in row_of(page.text, instance).text
    extend = f"/dashboard/instances/{instance.id}/extend"
    assert the(page.text, "data-expiry-extend").attrs["href"] == extend
    await send_expiry_warnings(context)
    browser.clock.advance(minutes=30)
    await send_expiry_warnings(context)  # the next minutes' runs find it sent
    [sent] = await expiry_warnings_to(settings, email)
    assert sent.subject == f"Your machine {instance.name} stops in 1 hour; its disk will be erased"
    assert f"stops at {instance.expires_at:%Y-%m-%d %H:%M} UTC" in sent.body
    assert sent.dedupe_key == service.expiry_warning_key(instance.id, instance.expires_at)
    page = await browser.page("/dashboard")
    assert the(page.text, "data-expiry-warning").text.startswith("Stops in 29 min;")
    assert f"extend it: {str(settings.public_base_url).rstrip('/')}{extend}" in sent.body

    # Extended by 2 hours from credit on its Extend page (priced there first), the same machine
    # stops later and is warned of again before its new end.
    async with fleet.unit() as db:
        await post(db, instance.user_id, EntryKind.TOP_UP, 100_000_000)
    quoted = await browser.page(f"{extend}?hours=2")
    price = int(the(quoted.text, "data-extend-price-cents").attrs["data-extend-price-cents"] or "")
    answer = await browser.submit(
        extend, {"hours": "2", "pay_with": "credits"}, form_page=f"{extend}?hours=2"
    )
    assert answer.status_code == 303, answer.text
    later = instance.expires_at + timedelta(hours=2)
    page = await browser.page("/dashboard")
    assert f"{later:%Y-%m-%d %H:%M} UTC" in row_of(page.text, instance).text
    assert elements(page.text, "data-expiry-warning") == []
    async with fleet.unit() as db:
        assert await balance(db, instance.user_id) == 100_000_000 - price * 1000
    browser.clock.advance(hours=2)
    await send_expiry_warnings(context)
    assert len(await expiry_warnings_to(settings, email)) == 2

    # Past its end it is no longer warned of (the expiry job stops it).
    browser.clock.advance(hours=1)
    await send_expiry_warnings(context)
    assert len(await expiry_warnings_to(settings, email)) == 2


async def test_nobody_else_can_see_or_terminate_an_instance(
    browser: Browser, other_browser: Browser, fleet: Fleet, email: str
) -> None:
    await browser.sign_up(email)
    await other_browser.sign_up("other-" + email)
    order_id = await fleet.paid_order(email, ("nvidia-a100", 1, 2))
    [instance] = await fleet.boot(order_id)
    path = f"/dashboard/instances/{instance.id}/terminate"

    assert (await other_browser.page(path)).status_code == 404
    answer = await other_browser.submit(path, form_page="/dashboard")
    assert answer.status_code == 404
    assert "No such instance" in answer.text
    theirs = await other_browser.page("/dashboard")
    assert instance.name not in theirs.text
    assert instance.ip_address is not None
    assert instance.ip_address not in theirs.text
    assert [i.status for i in await fleet.instances(order_id)] == [InstanceStatus.RUNNING]
    # A made-up id is a 404 too, not a validation error.
    assert (await browser.page("/dashboard/instances/not-an-id/terminate")).status_code == 404
