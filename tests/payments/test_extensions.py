"""Extending a fixed-hours instance: more paid hours for the same machine, from the credit
balance at once, or by card, applied by the order's provisioning once Stripe says it is paid;
never for a machine that stopped meanwhile, never twice."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.catalog.service import load_catalog
from computebill.config import Settings
from computebill.credits.models import CreditEntry, EntryKind
from computebill.credits.service import balance
from computebill.db import unit_of_work
from computebill.devserver.scratch import database
from computebill.errors import AppError, NotFound
from computebill.instances import service as instances
from computebill.instances.metering import InsufficientCredit
from computebill.instances.models import Instance, InstanceStatus
from computebill.invoices.models import Invoice, InvoiceLine
from computebill.jobs import JobName, take_requested_jobs
from computebill.orders.models import Order, OrderLine, OrderStatus
from computebill.orders.service import receipt
from computebill.payments import checkout as checkouts
from computebill.payments.refunds import refundable_cents
from computebill.payments.schemas import ExtensionQuoteOut
from tests.credits.ledger import add_user, post
from tests.payments.extensions import HOURLY_CENTS, NOW, running_instance
from tests.support.http import Api
from tests.support.openapi import assert_documented
from tests.support.stripe import payment_terms


async def extend_with_credit(
    db: AsyncSession, instance: Instance, hours: int, *, key: str | None = None
) -> tuple[Order, Instance]:
    return await checkouts.extend_with_credit(
        db,
        user_id=instance.user_id,
        catalog=await load_catalog(db),
        instance_id=instance.id,
        hours=hours,
        idempotency_key=key,
        seller=payment_terms().seller,
        now=NOW + timedelta(minutes=30),
    )


async def test_credit_pays_exactly_the_quote_and_moves_the_same_instances_stop(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    instance = await running_instance(db_session, user_id)
    await post(db_session, user_id, EntryKind.TOP_UP, 50_000_000)
    quote = checkouts.quote_extension(await load_catalog(db_session), instance, hours=3)
    assert (quote.price_cents, quote.currency) == (3 * HOURLY_CENTS, "usd")

    order, extended = await extend_with_credit(db_session, instance, 3, key="extend-1")
    jobs = take_requested_jobs(db_session)

    assert extended.id == instance.id
    assert extended.expires_at == NOW + timedelta(hours=5)
    assert (extended.paid_seconds, extended.paid_cents) == (5 * 3600, 2 * 668 + 3 * 668)
    assert await balance(db_session, user_id) == 50_000_000 - 3 * HOURLY_CENTS * 1000
    [entry] = await db_session.scalars(
        select(CreditEntry).where(
            CreditEntry.user_id == user_id, CreditEntry.kind == EntryKind.PURCHASE.value
        )
    )
    assert (entry.amount_millicents, entry.order_id, entry.instance_id) == (
        -3 * HOURLY_CENTS * 1000,
        order.id,
        instance.id,
    )
    assert order.status is OrderStatus.PAID
    assert order.total_cents == 3 * HOURLY_CENTS
    # The instance stops at its new end; the job asked for at the old one finds it moved.
    assert (JobName.EXPIRE_INSTANCE, (str(instance.id),), extended.expires_at) in [
        (job.name, job.args, job.at) for job in jobs
    ]
    assert (
        await db_session.scalar(
            select(func.count()).select_from(Instance).where(Instance.user_id == user_id)
        )
        == 1
    )

    # Its paperwork reads as an extension, in the one wording.
    wording = f"Extend {instance.name}: 3 h of 2 × NVIDIA H100 SXM · 24 vCPUs · 500 GB NVMe"
    [line] = await db_session.scalars(select(OrderLine).where(OrderLine.order_id == order.id))
    assert line.description.text == f"{wording} · us-east-1"
    invoice = await db_session.scalar(select(Invoice).where(Invoice.order_id == order.id))
    assert invoice is not None
    assert invoice.payment_method == "Credit balance"
    [invoiced] = await db_session.scalars(
        select(InvoiceLine.description).where(InvoiceLine.invoice_id == invoice.id)
    )
    assert invoiced == line.description.text
    mailed = await receipt(db_session, order.id)
    assert wording in mailed.body
    assert "paid time is extended" in mailed.body

    # The same Idempotency-Key answers the first extension; nothing is charged again.
    again, _ = await extend_with_credit(db_session, instance, 3, key="extend-1")
    assert again.id == order.id
    assert extended.expires_at == NOW + timedelta(hours=5)
    assert await balance(db_session, user_id) == 50_000_000 - 3 * HOURLY_CENTS * 1000


async def test_too_little_credit_is_a_402_and_changes_nothing(db_session: AsyncSession) -> None:
    user_id = await add_user(db_session)
    instance = await running_instance(db_session, user_id)
    await post(db_session, user_id, EntryKind.TOP_UP, 3 * HOURLY_CENTS * 1000 - 1)

    with pytest.raises(InsufficientCredit) as refused:
        await extend_with_credit(db_session, instance, 3)

    assert refused.value.code == "insufficient_credit"
    assert refused.value.extensions is not None
    assert refused.value.extensions["shortfall_cents"] == 1
    assert instance.expires_at == NOW + timedelta(hours=2)
    assert await balance(db_session, user_id) == 3 * HOURLY_CENTS * 1000 - 1
    assert (
        await db_session.scalar(
            select(func.count()).select_from(Order).where(Order.user_id == user_id)
        )
        == 1
    )  # the instance's own order only


async def card_extension(db: AsyncSession, instance: Instance, hours: int) -> Order:
    """An extension checked out by card and then paid, as fulfilment leaves it."""
    prepared = await checkouts.prepare_extension_checkout(
        db,
        user_id=instance.user_id,
        catalog=await load_catalog(db),
        instance_id=instance.id,
        hours=hours,
        idempotency_key=None,
        now=NOW,
    )
    order = prepared.order
    order.status = OrderStatus.PAID
    order.paid_at = NOW
    order.payment_intent_id = f"pi_{order.id.hex}"
    await db.flush()
    return order


async def test_a_paid_card_extension_extends_once_however_often_provisioning_runs(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    instance = await running_instance(db_session, user_id)
    order = await card_extension(db_session, instance, 4)
    assert order.total_cents == 4 * HOURLY_CENTS

    for _ in range(3):  # the job, a retry, the sweep's
        assert await instances.create_instances(db_session, order.id, now=NOW) == 0

    assert instance.expires_at == NOW + timedelta(hours=6)
    assert instance.paid_seconds == 6 * 3600
    assert order.provisioned_at == NOW
    assert (
        await db_session.scalar(
            select(func.count()).select_from(Instance).where(Instance.user_id == user_id)
        )
        == 1
    )


async def test_taking_an_extension_back_asks_for_the_stop_at_the_earlier_end(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    instance = await running_instance(db_session, user_id)
    order = await card_extension(db_session, instance, 4)
    await instances.create_instances(db_session, order.id, now=NOW)
    take_requested_jobs(db_session)
    assert instance.expires_at == NOW + timedelta(hours=6)

    await instances.take_back_extension(db_session, order, reason="order refunded")
    assert (instance.expires_at, instance.paid_seconds) == (NOW + timedelta(hours=2), 2 * 3600)
    assert instance.paid_cents == 2 * HOURLY_CENTS
    [expiry] = take_requested_jobs(db_session)
    assert (expiry.name, expiry.args, expiry.at) == (
        JobName.EXPIRE_INSTANCE,
        (str(instance.id),),
        NOW + timedelta(hours=2),
    )

    # A stopped machine, or an extension never applied, has nothing to give back.
    instance.status = InstanceStatus.TERMINATED
    await instances.take_back_extension(db_session, order, reason="payment disputed")
    unapplied = await card_extension(db_session, await running_instance(db_session, user_id), 1)
    await instances.take_back_extension(db_session, unapplied, reason="order refunded")
    assert instance.paid_seconds == 2 * 3600
    assert take_requested_jobs(db_session) == []


async def test_a_machine_stopped_before_its_extension_was_paid_stays_stopped_and_is_credited(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    instance = await running_instance(db_session, user_id)
    order = await card_extension(db_session, instance, 3)
    instance.status = InstanceStatus.TERMINATED  # its paid time ran out meanwhile
    instance.terminated_at = NOW + timedelta(hours=2)
    await db_session.flush()

    for _ in range(2):
        await instances.create_instances(db_session, order.id, now=NOW + timedelta(hours=3))

    assert instance.status is InstanceStatus.TERMINATED
    assert instance.expires_at == NOW + timedelta(hours=2)
    [entry] = await db_session.scalars(
        select(CreditEntry).where(
            CreditEntry.order_id == order.id, CreditEntry.kind == EntryKind.UNUSED_TIME.value
        )
    )
    assert entry.amount_millicents == 3 * HOURLY_CENTS * 1000
    assert entry.reason == f"{instance.name} was terminated before the extension was paid"
    assert await balance(db_session, user_id) == 3 * HOURLY_CENTS * 1000
    # Credited, so never refunded as well.
    assert await refundable_cents(db_session, order) == 0


async def test_an_early_stop_gives_back_the_extensions_unused_time_against_its_own_order(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    instance = await running_instance(db_session, user_id, hours=1)
    extension = await card_extension(db_session, instance, 1)
    await instances.create_instances(db_session, extension.id, now=NOW)

    # Stopped before it ever used anything of its two paid hours: both orders come back whole.
    instance.started_at = NOW + timedelta(minutes=1)
    await instances.request_stop(
        db_session, user_id=user_id, instance_id=instance.id, now=NOW + timedelta(minutes=1)
    )
    credited = dict(
        (
            await db_session.execute(
                select(CreditEntry.order_id, CreditEntry.amount_millicents).where(
                    CreditEntry.instance_id == instance.id
                )
            )
        ).all()
    )
    assert credited == {instance.order_id: 668_000, extension.id: 668_000}
    assert await refundable_cents(db_session, extension) == 0


async def test_what_cannot_be_extended(db_session: AsyncSession) -> None:
    user_id = await add_user(db_session)
    catalog = await load_catalog(db_session)
    instance = await running_instance(db_session, user_id)

    async def extend(hours: int, *, by: uuid.UUID = user_id) -> None:
        await checkouts.prepare_extension_checkout(
            db_session,
            user_id=by,
            catalog=catalog,
            instance_id=instance.id,
            hours=hours,
            idempotency_key=None,
            now=NOW,
        )

    for hours in (0, catalog.policy.max_hours + 1):
        with pytest.raises(AppError) as bad_hours:
            await extend(hours)
        assert bad_hours.value.status == 422
        assert bad_hours.value.errors is not None
        assert bad_hours.value.errors[0]["field"] == "body.hours"
    with pytest.raises(NotFound):
        await extend(1, by=await add_user(db_session))

    instance.status = InstanceStatus.STOPPING
    await db_session.flush()
    with pytest.raises(instances.InstanceNotExtendable):
        await extend(1)


# The API --------------------------------------------------------------------------------------


async def test_the_api_extends_from_credit_and_answers_each_refusal(
    api: Api, settings: Settings
) -> None:
    me = await api.sign_up(f"extend-{secrets.token_hex(4)}@example.com")
    token, user_id = me["access_token"], uuid.UUID(me["user"]["id"])
    async with database(settings) as sessions:
        async with unit_of_work(sessions) as db:
            instance = await running_instance(db, user_id)
        path = f"/api/v1/instances/{instance.id}/extensions"

        short = await api.call("POST", path, token, {"hours": 3, "pay_with": "credits"})
        assert short.status_code == 402, short.text
        assert short.headers["content-type"].startswith("application/problem+json")
        assert (short.json()["code"], short.json()["shortfall_cents"]) == (
            "insufficient_credit",
            3 * HOURLY_CENTS,
        )

        async with unit_of_work(sessions) as db:
            await post(db, user_id, EntryKind.TOP_UP, 100_000_000)
        answer = await api.call("POST", path, token, {"hours": 3, "pay_with": "credits"})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert (body["instance_id"], body["price_cents"], body["checkout_url"]) == (
            str(instance.id),
            3 * HOURLY_CENTS,
            None,
        )
        assert datetime.fromisoformat(body["expires_at"]) == NOW + timedelta(hours=5)
        async with sessions() as db:
            assert await balance(db, user_id) == 100_000_000 - 3 * HOURLY_CENTS * 1000

    for hours in (0, 10_000, "3"):
        refused = await api.call("POST", path, token, {"hours": hours, "pay_with": "credits"})
        assert refused.status_code == 422, (hours, refused.text)
    wrong_way = await api.call("POST", path, token, {"hours": 1, "pay_with": "cash"})
    assert wrong_way.status_code == 422

    other = await api.sign_up(f"other-{secrets.token_hex(4)}@example.com")
    stranger = await api.call(
        "POST", path, other["access_token"], {"hours": 1, "pay_with": "credits"}
    )
    assert stranger.status_code == 404

    launched = await api.call(
        "POST",
        "/api/v1/instances",
        token,
        {"gpu": "nvidia-h100", "gpu_count": 2, "vcpus": 24, "storage_gb": 500},
    )
    assert launched.status_code == 201, launched.text
    metered = await api.call(
        "POST",
        f"/api/v1/instances/{launched.json()['id']}/extensions",
        token,
        {"hours": 1, "pay_with": "credits"},
    )
    assert metered.status_code == 409
    assert metered.json()["code"] == "pay_as_you_go_not_extendable"


async def test_the_api_quotes_an_extension_without_buying_it(api: Api, settings: Settings) -> None:
    me = await api.sign_up(f"quote-{secrets.token_hex(4)}@example.com")
    token, user_id = me["access_token"], uuid.UUID(me["user"]["id"])
    async with database(settings) as sessions:
        async with unit_of_work(sessions) as db:
            instance = await running_instance(db, user_id)
        path = f"/api/v1/instances/{instance.id}/extensions/quote"

        quoted = await api.http.get(
            path, params={"hours": 3}, headers={"authorization": f"Bearer {token}"}
        )
        assert_documented(api.app, quoted, ExtensionQuoteOut)
        assert quoted.json() == {
            "instance_id": str(instance.id),
            "hours": 3,
            "price_cents": 3 * HOURLY_CENTS,
            "currency": "usd",
            "expires_at": (NOW + timedelta(hours=5)).isoformat().replace("+00:00", "Z"),
            "paid_seconds": 5 * 3600,
        }
        async with sessions() as db:  # nothing bought
            assert await db.scalar(select(func.count()).where(Order.user_id == user_id)) == 1
            still = await db.get(Instance, instance.id)
            assert still is not None
            assert still.expires_at == NOW + timedelta(hours=2)

    for hours in ("0", "10000", "lots"):
        refused = await api.http.get(
            path, params={"hours": hours}, headers={"authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 422, (hours, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    other = await api.sign_up(f"other-{secrets.token_hex(4)}@example.com")
    stranger = await api.http.get(
        path, params={"hours": 1}, headers={"authorization": f"Bearer {other['access_token']}"}
    )
    assert stranger.status_code == 404
