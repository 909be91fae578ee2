"""Instances: made for paid order lines or launched pay as you go, launched, watched until they
run, and stopped when the paid time is up (to the second), early on request, when the payment
is undone, or when the credit that pays for them runs out."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import structlog
from sqlalchemy import Select, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.audit import service as audit
from computebill.auth.models import User
from computebill.auth.service import require_verified_email
from computebill.catalog.models import MachineImage
from computebill.catalog.service import (
    Catalog,
    ValidConfiguration,
    chosen_image,
    installed_image,
    price_valid,
    validate_configuration,
)
from computebill.config import MailBackend
from computebill.credits import service as credits
from computebill.credits.models import EntryKind
from computebill.db import shown_columns
from computebill.errors import AppError, Conflict, NotFound
from computebill.instances import metering
from computebill.instances.models import (
    Billing,
    Instance,
    InstanceSshKey,
    InstanceStatus,
    InstanceStatusChange,
)
from computebill.instances.provider import (
    ComputeProvider,
    LaunchImage,
    LaunchSpec,
    Machine,
    MachineState,
)
from computebill.jobs import JobName, request_job
from computebill.mail.service import send_email
from computebill.metrics import CREDIT_STOPS, after_commit
from computebill.money import MILLICENTS_PER_CENT, round_half_up
from computebill.orders import service as orders
from computebill.orders.models import Order, OrderLine, OrderStatus, OrderStatusChange
from computebill.paging import newest_first, read_page
from computebill.sshkeys import service as sshkeys
from computebill.sshkeys.models import SshKey

log = structlog.get_logger(__name__)


ACTIVE = (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING, InstanceStatus.STOPPING)
# Statuses an instance leaves on its own, without anyone asking (a console keeps watching).
# Orders whose instances are owed: paid, or paid with part of it refunded (a partial refund is
# a credit, not a cancellation).
OWED_INSTANCES = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})
SETTLING = frozenset({InstanceStatus.PROVISIONING, InstanceStatus.STOPPING})
ALLOWED = {
    InstanceStatus.PROVISIONING: {
        InstanceStatus.RUNNING,
        InstanceStatus.FAILED,
        InstanceStatus.STOPPING,
        InstanceStatus.SUSPENDED,
    },
    InstanceStatus.RUNNING: {InstanceStatus.STOPPING, InstanceStatus.SUSPENDED},
    InstanceStatus.STOPPING: {InstanceStatus.TERMINATED, InstanceStatus.SUSPENDED},
}
MAX_POLL_DELAY = 30.0
EXPIRY_REASON = "paid time is up"
OWNER_STOP_REASON = "stopped by its owner"
CREDIT_CAP_REASON = "the credit balance ran out"
BUDGET_REASON = "the monthly budget was reached"
ACCOUNT_DELETED_REASON = "its account was deleted"
OPERATOR_STOP_PREFIX = "stopped by an operator: "


def _transition(
    db: AsyncSession, instance: Instance, to: InstanceStatus, *, reason: str, now: datetime
) -> bool:
    if to not in ALLOWED.get(instance.status, set()):
        return False
    db.add(
        InstanceStatusChange(
            instance_id=instance.id,
            from_status=instance.status,
            to_status=to,
            reason=reason,
            changed_at=now,
        )
    )
    instance.status = to
    return True


def instance_name(gpu_slug: str, gpu_count: int, instance_id: uuid.UUID) -> str:
    """Like `h100x2-3f9a1c` (or `mi300x2-…`): the model without its vendor, the GPU count, a
    short id."""
    model = gpu_slug.split("-", 1)[-1]
    times = "" if model.endswith("x") else "x"
    return f"{model}{times}{gpu_count}-{instance_id.hex[:6]}"


def image_columns(image: MachineImage | None) -> dict[str, Any]:
    """An instance's copy of its image, as the image is now: a later change to the catalog's
    image leaves the instance as it was installed."""
    if image is None:
        return {"image_slug": None, "image_name": None, "image_versions": None}
    return {
        "image_slug": image.slug,
        "image_name": image.name,
        "image_versions": [dict(part) for part in image.versions],
    }


def poll_delay_seconds(polls: int) -> float:
    """1, 2, 4 … seconds between looks at a booting machine, at most 30."""
    return float(min(2**polls, MAX_POLL_DELAY))


async def create_instances(db: AsyncSession, order_id: uuid.UUID, *, now: datetime) -> int:
    """Make every instance a paid order is owed (the unique key makes a rerun a no-op) and ask
    for launches of those not launched yet. Returns how many were asked for."""
    # Locked, so a refund or dispute processed meanwhile (which locks the order too) either
    # comes first and is seen here, or comes after and finds these instances to stop.
    order = await db.get(Order, order_id, with_for_update=True)
    if order is None or order.status not in OWED_INSTANCES:
        return 0
    lines = list(await db.scalars(select(OrderLine).where(OrderLine.order_id == order_id)))
    for line in lines:
        if line.extends_instance_id is not None:
            if order.provisioned_at is None:  # set below, in this transaction: extended once
                await _apply_paid_extension(db, order, line, now=now)
            continue
        keys = await sshkeys.kept_keys(db, user_id=order.user_id, key_ids=line.ssh_key_ids)
        image = image_columns(await installed_image(db, line.image_slug, line.gpu_slug))
        for index in range(line.quantity):
            instance_id = uuid.uuid4()
            created = await db.scalar(
                insert(Instance)
                .values(
                    id=instance_id,
                    user_id=order.user_id,
                    order_id=order.id,
                    order_line_id=line.id,
                    index=index,
                    name=instance_name(line.gpu_slug, line.gpu_count, instance_id),
                    gpu_slug=line.gpu_slug,
                    gpu_name=line.gpu_name,
                    gpu_count=line.gpu_count,
                    vcpus=line.vcpus,
                    storage_gb=line.storage_gb,
                    region=line.region,
                    paid_seconds=line.hours * 3600,
                    paid_cents=line.unit_total_cents,
                    **image,
                    status=InstanceStatus.PROVISIONING,
                    polls=0,
                )
                .on_conflict_do_nothing(constraint="uq_instances_order_line_id_index")
                .returning(Instance.id)
            )
            if created is not None:
                db.add(
                    InstanceStatusChange(
                        instance_id=created,
                        from_status=None,
                        to_status=InstanceStatus.PROVISIONING,
                        reason=f"order {order.id} paid",
                        changed_at=now,
                    )
                )
                put_ssh_keys(db, created, keys)
    waiting = list(
        await db.scalars(
            select(Instance.id).where(
                Instance.order_id == order_id,
                Instance.status == InstanceStatus.PROVISIONING,
                Instance.provider_id.is_(None),
            )
        )
    )
    for instance_id in waiting:
        request_job(db, JobName.LAUNCH_INSTANCE, str(instance_id))
    if order.provisioned_at is None:
        order.provisioned_at = now  # every instance exists: the sweep need not look again
    return len(waiting)


# Extensions: more paid hours for a live fixed-hours instance (docs/architecture.md §4) ---------

# Only a machine still live can be given more time: one that stopped has lost its disk.
EXTENDABLE = (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)


class PayAsYouGoNotExtendable(AppError):
    status = 409
    code = "pay_as_you_go_not_extendable"


class InstanceNotExtendable(AppError):
    status = 409
    code = "instance_not_extendable"


def check_extendable(instance: Instance) -> None:
    """409 unless the instance is a live fixed-hours one."""
    if instance.billing == Billing.PAY_AS_YOU_GO:
        raise PayAsYouGoNotExtendable(
            "A pay-as-you-go instance runs until it is stopped: there is nothing to extend."
        )
    if instance.status not in EXTENDABLE:
        raise InstanceNotExtendable(
            f"The instance is {instance.status.value}: only a provisioning or running instance"
            " can be extended."
        )


async def lock_own_instance(
    db: AsyncSession, *, user_id: uuid.UUID, instance_id: uuid.UUID
) -> Instance:
    """The caller's instance, locked to the end of the transaction (404 for anyone else's):
    requests to extend it are judged one after the other."""
    instance = await db.scalar(
        select(Instance)
        .where(Instance.id == instance_id, Instance.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if instance is None:
        raise NotFound("No such instance.")
    return instance


def extension_configuration(
    catalog: Catalog, instance: Instance, *, hours: int
) -> ValidConfiguration:
    """The instance's configuration for `hours` more, checked against the catalog now (422 for
    hours outside the policy's range, or a model no longer offered): what the extension is
    priced at, by the one pricing function."""
    return validate_configuration(
        catalog,
        gpu=instance.gpu_slug,
        gpu_count=instance.gpu_count,
        vcpus=instance.vcpus,
        storage_gb=instance.storage_gb,
        hours=hours,
        region=instance.region,
    )


def extend(db: AsyncSession, instance: Instance, *, hours: int, cents: int) -> None:
    """Add paid hours to a locked, live fixed-hours instance: a provisioning one runs that much
    longer once it boots, a running one stops that much later (its expiry job asked for again;
    the one asked for before finds the new expiry and does nothing)."""
    assert instance.status in EXTENDABLE
    assert instance.paid_seconds is not None
    instance.paid_seconds += hours * 3600
    instance.paid_cents = (instance.paid_cents or 0) + cents
    if instance.expires_at is not None:
        instance.expires_at += timedelta(hours=hours)
        request_job(db, JobName.EXPIRE_INSTANCE, str(instance.id), at=instance.expires_at)


async def _apply_paid_extension(
    db: AsyncSession, order: Order, line: OrderLine, *, now: datetime
) -> None:
    """A paid extension's line (the order locked by the caller): the instance gets its hours, or,
    when it stopped before the payment was applied, is left stopped and the payment comes back as
    credit (an `unused_time` entry for the order, with why: the refund route then counts it, so
    it is never refunded as well)."""
    assert line.extends_instance_id is not None
    instance = await _locked(db, line.extends_instance_id)
    assert instance is not None  # instances are never deleted
    if instance.status in EXTENDABLE:
        extend(db, instance, hours=line.hours, cents=line.unit_total_cents)
        log.info("instance_extended", instance_id=str(instance.id), order_id=str(order.id))
        return
    reason = f"{instance.name} was {instance.status.value} before the extension was paid"
    left = await _order_left_millicents(db, order)
    if left > 0:
        await credits.post_entry(
            db,
            user_id=order.user_id,
            kind=EntryKind.UNUSED_TIME,
            amount_millicents=left,
            idempotency_key=f"extension_not_applied:{order.id}",
            instance_id=instance.id,
            order_id=order.id,
            reason=reason,
            now=now,
        )
    log.warning("extension_not_applied", order_id=str(order.id), reason=reason, credited=left)


async def take_back_extension(db: AsyncSession, order: Order, *, reason: str) -> None:
    """An extension whose money went back (refunded in full, or disputed; the order locked by
    the caller) takes its hours back from its instance: the instance stops at its earlier end,
    at once when that has passed (its expiry job asked for again). An extension never applied
    (the instance had stopped, and the payment came back as credit) or an instance no longer
    live has nothing to take back."""
    if order.provisioned_at is None:  # not applied yet; a refunded order never will be
        return
    lines = await db.scalars(
        select(OrderLine).where(
            OrderLine.order_id == order.id, OrderLine.extends_instance_id.is_not(None)
        )
    )
    for line in lines:
        assert line.extends_instance_id is not None
        instance = await _locked(db, line.extends_instance_id)
        if instance is None or instance.status not in EXTENDABLE:
            continue
        assert instance.paid_seconds is not None
        instance.paid_seconds -= line.hours * 3600
        instance.paid_cents = (instance.paid_cents or 0) - line.unit_total_cents
        if instance.expires_at is not None:
            instance.expires_at -= timedelta(hours=line.hours)
            request_job(db, JobName.EXPIRE_INSTANCE, str(instance.id), at=instance.expires_at)
        log.warning(
            "extension_taken_back",
            instance_id=str(instance.id),
            order_id=str(order.id),
            reason=reason,
        )


async def _order_left_millicents(db: AsyncSession, order: Order) -> int:
    """What of an order is neither refunded nor already given back as credit."""
    given = await credits.credited_millicents(db, order_id=order.id, kind=EntryKind.UNUSED_TIME)
    return (order.total_cents - order.refunded_cents) * MILLICENTS_PER_CENT - given


def put_ssh_keys(db: AsyncSession, instance_id: uuid.UUID, keys: list[SshKey]) -> None:
    """Copy the keys onto the instance: what its machine is launched with, whatever becomes of
    the account's keys afterwards."""
    for position, key in enumerate(keys):
        db.add(
            InstanceSshKey(
                instance_id=instance_id,
                fingerprint=key.fingerprint,
                position=position,
                name=key.name,
                public_key=key.public_key,
                comment=key.comment,
            )
        )


async def instance_ssh_keys(db: AsyncSession, instance_id: uuid.UUID) -> list[InstanceSshKey]:
    """The keys on an instance's machine, in the order they were chosen."""
    return (await ssh_keys_of(db, [instance_id])).get(instance_id, [])


async def ssh_keys_of(
    db: AsyncSession, instance_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[InstanceSshKey]]:
    """The keys on these instances' machines (one statement), by instance, in the order chosen."""
    keys: dict[uuid.UUID, list[InstanceSshKey]] = {}
    if not instance_ids:
        return keys
    for key in await db.scalars(
        select(InstanceSshKey)
        .where(InstanceSshKey.instance_id.in_(instance_ids))
        .order_by(InstanceSshKey.instance_id, InstanceSshKey.position)
    ):
        keys.setdefault(key.instance_id, []).append(key)
    return keys


def authorized_key(key: InstanceSshKey) -> str:
    """The key as an authorized_keys line."""
    return f"{key.public_key} {key.comment}" if key.comment else key.public_key


async def launch_pay_as_you_go(
    db: AsyncSession,
    catalog: Catalog,
    valid: ValidConfiguration,
    *,
    user_id: uuid.UUID,
    max_hours: int | None,
    ssh_key_ids: list[uuid.UUID] | None,
    image: str | None,
    idempotency_key: str | None,
    min_runway_seconds: int,
    now: datetime,
) -> Instance:
    """Make a pay-as-you-go instance at the catalog's rate now and ask for its launch, if the
    live balance can pay for it (402 `insufficient_credit` otherwise). The same Idempotency-Key
    answers the instance it made before, whatever the balance is now. Its machine gets the
    account's keys named by `ssh_key_ids` (422 `unknown_ssh_key` for one that is not the
    account's), or all of them when None. It is installed with the offered machine image
    `image` names (422 `unknown_image` otherwise), or the default one when None. Needs a
    verified e-mail address (403 `email_unverified`)."""
    await require_verified_email(db, user_id)
    installed = chosen_image(catalog, image, valid.model)
    if idempotency_key is not None:
        made = await _instance_by_key(db, user_id, idempotency_key)
        if made is not None:
            return _same_launch(made, valid, max_hours, installed)
    keys = await sshkeys.chosen_keys(db, user_id=user_id, key_ids=ssh_key_ids)
    rate = price_valid(catalog, valid).hourly_millicents
    await metering.admit_launch(
        db, user_id, rate_millicents_per_hour=rate, min_runway_seconds=min_runway_seconds, now=now
    )
    instance_id = uuid.uuid4()
    configuration = valid.configuration
    created = await db.scalar(
        insert(Instance)
        .values(
            id=instance_id,
            user_id=user_id,
            billing=Billing.PAY_AS_YOU_GO,
            index=0,
            name=instance_name(valid.model.slug, configuration.gpu_count, instance_id),
            gpu_slug=valid.model.slug,
            gpu_name=valid.model.name,
            gpu_count=configuration.gpu_count,
            vcpus=configuration.vcpus,
            storage_gb=configuration.storage_gb,
            region=valid.region,
            rate_millicents_per_hour=rate,
            max_hours=max_hours,
            **image_columns(installed),
            idempotency_key=idempotency_key,
            status=InstanceStatus.PROVISIONING,
            polls=0,
        )
        .on_conflict_do_nothing(constraint="uq_instances_user_id_idempotency_key")
        .returning(Instance.id)
    )
    if created is None:  # the same key, in a request that committed while this one waited
        assert idempotency_key is not None
        made = await _instance_by_key(db, user_id, idempotency_key)
        assert made is not None
        return _same_launch(made, valid, max_hours, installed)
    db.add(
        InstanceStatusChange(
            instance_id=created,
            from_status=None,
            to_status=InstanceStatus.PROVISIONING,
            reason="launched pay as you go",
            changed_at=now,
        )
    )
    put_ssh_keys(db, created, keys)
    request_job(db, JobName.LAUNCH_INSTANCE, str(created))
    instance = await db.get(Instance, created)
    assert instance is not None
    return instance


def _same_launch(
    made: Instance, valid: ValidConfiguration, max_hours: int | None, image: MachineImage | None
) -> Instance:
    """The instance an Idempotency-Key made, if this request asks for the same; a 409 if not."""
    configuration = valid.configuration
    asked = (
        valid.model.slug,
        configuration.gpu_count,
        configuration.vcpus,
        configuration.storage_gb,
        valid.region,
        max_hours,
        image.slug if image else None,
    )
    if asked != (
        made.gpu_slug,
        made.gpu_count,
        made.vcpus,
        made.storage_gb,
        made.region,
        made.max_hours,
        made.image_slug,
    ):
        raise Conflict("This Idempotency-Key was used for a different launch.")
    return made


async def _instance_by_key(
    db: AsyncSession, user_id: uuid.UUID, idempotency_key: str
) -> Instance | None:
    return await db.scalar(
        select(Instance).where(
            Instance.user_id == user_id, Instance.idempotency_key == idempotency_key
        )
    )


# Provider calls: made between transactions, never under a row lock nor with a connection held
# (docs/architecture.md §5.9). Each operation reads the instance, calls the provider (whose
# calls are idempotent by our ids), then locks the instance and applies the answer only if its
# state still allows it. So these take a way to open units of work (the caller's), not a session.
UnitsOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]


async def _locked(db: AsyncSession, instance_id: uuid.UUID) -> Instance | None:
    return await db.scalar(select(Instance).where(Instance.id == instance_id).with_for_update())


async def _status_and_machine(
    db: AsyncSession, instance_id: uuid.UUID
) -> tuple[InstanceStatus, str | None] | None:
    row = (
        await db.execute(
            select(Instance.status, Instance.provider_id).where(Instance.id == instance_id)
        )
    ).one_or_none()
    return None if row is None else (row.status, row.provider_id)


def _launch_spec(instance: Instance, keys: list[InstanceSshKey]) -> LaunchSpec:
    return LaunchSpec(
        key=str(instance.id),  # a second launch of this instance finds the first
        name=instance.name,
        gpu_slug=instance.gpu_slug,
        gpu_count=instance.gpu_count,
        vcpus=instance.vcpus,
        storage_gb=instance.storage_gb,
        region=instance.region,
        ssh_public_keys=tuple(authorized_key(key) for key in keys),
        image=(
            None
            if instance.image_slug is None
            else LaunchImage(
                slug=instance.image_slug,
                versions=tuple(
                    (part["name"], part["version"]) for part in instance.image_versions or ()
                ),
            )
        ),
    )


async def launch(
    units: UnitsOfWork, provider: ComputeProvider, instance_id: uuid.UUID, *, now: datetime
) -> None:
    """Start the machine of a provisioning instance, then watch it boot."""
    async with units() as db:
        instance = await db.get(Instance, instance_id)
        if instance is None or instance.status is not InstanceStatus.PROVISIONING:
            return
        keys = await instance_ssh_keys(db, instance_id)
        known, spec = instance.provider_id, _launch_spec(instance, keys)
    provider_id = known or await provider.launch(spec)
    async with units() as db:
        instance = await _locked(db, instance_id)
        if instance is None:
            return
        if instance.provider_id is None:
            instance.provider_id = provider_id
            instance.launch_requested_at = now
        if instance.status is InstanceStatus.PROVISIONING:
            request_job(db, JobName.POLL_INSTANCE, str(instance.id))
            return
    # Stopped while its machine was being launched: the stop may not have known of the machine.
    await provider.terminate(provider_id)


async def poll(
    units: UnitsOfWork,
    provider: ComputeProvider,
    instance_id: uuid.UUID,
    *,
    now: datetime,
    deadline: timedelta,
) -> None:
    """Look at a booting machine: running (the paid time starts now), failed, or look again."""
    async with units() as db:
        found = await _status_and_machine(db, instance_id)
        if found == (InstanceStatus.PROVISIONING, None):
            request_job(db, JobName.LAUNCH_INSTANCE, str(instance_id))
    status, provider_id = found or (None, None)
    if provider_id is None:
        return
    if status is InstanceStatus.FAILED:
        # Its machine is released after the failure is recorded; a retry finishes that.
        await provider.terminate(provider_id)
        return
    if status is not InstanceStatus.PROVISIONING:
        return
    machine = await provider.describe(provider_id)
    async with units() as db:
        failed = await _record_look(db, instance_id, machine, now=now, deadline=deadline)
    if failed:
        await provider.terminate(provider_id)


async def _record_look(
    db: AsyncSession,
    instance_id: uuid.UUID,
    machine: Machine,
    *,
    now: datetime,
    deadline: timedelta,
) -> bool:
    """Apply what the provider said of a booting machine; True when the launch failed (its
    machine is to be released once this is committed)."""
    instance = await _locked(db, instance_id)
    if (
        instance is None
        or instance.status is not InstanceStatus.PROVISIONING
        or instance.provider_id != machine.provider_id
    ):
        return False
    if machine.state is MachineState.RUNNING:
        _transition(db, instance, InstanceStatus.RUNNING, reason="booted", now=now)
        instance.ip_address = machine.ip_address
        instance.ssh_user = machine.ssh_user
        instance.ssh_port = machine.ssh_port
        # Time spent provisioning is not charged: the paid hours, or the metering, start now.
        instance.started_at = now
        run_for = instance.paid_seconds or (instance.max_hours or 0) * 3600
        if run_for:
            instance.expires_at = now + timedelta(seconds=run_for)
            request_job(db, JobName.EXPIRE_INSTANCE, str(instance.id), at=instance.expires_at)
        if instance.billing == Billing.PAY_AS_YOU_GO:
            # The burn rate grew: the account reaches its cap sooner.
            request_job(db, JobName.ENFORCE_CREDIT_CAP, str(instance.user_id))
        return False
    started = instance.launch_requested_at or now
    if machine.state is MachineState.BOOTING and now - started < deadline:
        instance.polls += 1
        request_job(
            db,
            JobName.POLL_INSTANCE,
            str(instance.id),
            at=now + timedelta(seconds=poll_delay_seconds(instance.polls)),
        )
        return False
    reason = machine.failure or (
        f"did not boot within {int(deadline.total_seconds())} s"
        if machine.state is MachineState.BOOTING
        else f"the provider reports it {machine.state.value}"
    )
    _transition(db, instance, InstanceStatus.FAILED, reason=reason[:200], now=now)
    instance.failure_reason = reason[:500]
    log.warning("instance_launch_failed", instance_id=str(instance.id), reason=reason)
    return True


async def stop(
    units: UnitsOfWork,
    provider: ComputeProvider,
    instance_id: uuid.UUID,
    *,
    reason: str,
    now: datetime,
    final: InstanceStatus = InstanceStatus.TERMINATED,
) -> None:
    """Stop the machine and end the instance (`final` is terminated, or suspended)."""
    async with units() as db:
        found = await _status_and_machine(db, instance_id)
    if found is None or found[0] not in ACTIVE:
        return
    stopped = found[1]
    if stopped is not None:
        await provider.terminate(stopped)
    async with units() as db:
        instance = await _locked(db, instance_id)
        if instance is None or instance.status not in ACTIVE:
            return
        await _end_run(db, instance, now=now, by_owner=False)
        if final is InstanceStatus.TERMINATED:
            _transition(db, instance, InstanceStatus.STOPPING, reason=reason, now=now)
        _transition(db, instance, final, reason=reason, now=now)
        instance.terminated_at = now
        launched_meanwhile = instance.provider_id
    if launched_meanwhile not in (None, stopped):
        await provider.terminate(launched_meanwhile)


async def expire(
    units: UnitsOfWork, provider: ComputeProvider, instance_id: uuid.UUID, *, now: datetime
) -> None:
    """Stop an instance whose paid time is up; early (a clock-skewed job, or an expiry an
    extension moved) it does nothing. Its run ends under its lock, before the machine is
    released: an extension (which takes the same lock and wants it live) comes first and moves
    the expiry, or comes after and finds it stopping."""
    async with units() as db:
        instance = await _locked(db, instance_id)
        if instance is None or instance.expires_at is None or instance.expires_at > now:
            return
        if instance.status in (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING):
            await _end_run(db, instance, now=now, by_owner=False)
            _transition(db, instance, InstanceStatus.STOPPING, reason=EXPIRY_REASON, now=now)
    await stop(units, provider, instance_id, reason=EXPIRY_REASON, now=now)


async def request_stop(
    db: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    instance_id: uuid.UUID,
    now: datetime,
    reason: str = OWNER_STOP_REASON,
) -> tuple[Instance, InstanceStatus | None]:
    """End an instance early (idempotent): its owner (`user_id`; 404 for anyone else's), or an
    operator (`user_id` None, with their reason). Either way unused paid time comes back as
    credit. Returns the instance and the status this call stopped it from (None: it was not
    live)."""
    query = select(Instance).where(Instance.id == instance_id)
    if user_id is not None:
        query = query.where(Instance.user_id == user_id)
    instance = await db.scalar(query.with_for_update())
    if instance is None:
        raise NotFound("No such instance.")
    stopped_from = instance.status
    if InstanceStatus.STOPPING not in ALLOWED.get(stopped_from, set()):
        return instance, None
    await _end_run(db, instance, now=now, by_owner=True)
    _transition(db, instance, InstanceStatus.STOPPING, reason=reason, now=now)
    request_job(db, JobName.STOP_INSTANCE, str(instance.id), reason)
    await db.flush()  # the list read next (the console's) reads rows, not the session
    return instance, stopped_from


async def _end_run(db: AsyncSession, instance: Instance, *, now: datetime, by_owner: bool) -> None:
    """Billing for a locked instance about to stop: a pay-as-you-go run is settled to this
    second, in this transaction; a fixed-hours instance its owner stops early gives its unused
    seconds back as credit. Called before the status moves (the settlement reads it)."""
    if instance.status not in (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING):
        return
    if instance.status is InstanceStatus.RUNNING:
        instance.run_ended_at = now
    if instance.billing == Billing.PAY_AS_YOU_GO:
        await metering.settle(db, [instance.id], now=now)
    elif by_owner:
        await _credit_unused_time(db, instance, now=now)


async def _credit_unused_time(db: AsyncSession, instance: Instance, *, now: datetime) -> None:
    """floor(paid × unused seconds / paid seconds), as an `unused_time` entry. Across an order,
    never more than it has left after refunds: the refund route counts these credits too."""
    assert instance.paid_seconds
    assert instance.paid_cents is not None
    assert instance.order_id is not None
    owed = unused_time_millicents(instance, now=now)
    # Its own order first, then its extensions, oldest first: each order is credited at most
    # what it has left, so a refund of any of them never pays the same money twice.
    extensions = select(OrderLine.order_id).where(OrderLine.extends_instance_id == instance.id)
    paid = await db.scalars(
        select(Order)
        .where(
            (Order.id == instance.order_id) | Order.id.in_(extensions),
            Order.status.in_(OWED_INSTANCES),
        )
        .order_by(Order.id != instance.order_id, Order.paid_at)
    )
    for order in list(paid):
        amount = min(owed, await _order_left_millicents(db, order))
        if amount <= 0:
            continue
        owed -= amount
        first = order.id == instance.order_id  # its key from before extensions existed
        await credits.post_entry(
            db,
            user_id=instance.user_id,
            kind=EntryKind.UNUSED_TIME,
            amount_millicents=amount,
            idempotency_key=f"unused_time:{instance.id}"
            if first
            else f"unused_time:{instance.id}:{order.id}",
            instance_id=instance.id,
            order_id=order.id,
            now=now,
        )


async def stop_order_instances(
    db: AsyncSession, order_id: uuid.UUID, *, reason: str, suspend: bool
) -> int:
    """After a full refund (terminate) or a dispute (suspend): stop every live instance."""
    ids = list(
        await db.scalars(
            select(Instance.id).where(Instance.order_id == order_id, Instance.status.in_(ACTIVE))
        )
    )
    job = JobName.SUSPEND_INSTANCE if suspend else JobName.STOP_INSTANCE
    for instance_id in ids:
        request_job(db, job, str(instance_id), reason)
    return len(ids)


# The credit cap (docs/architecture.md §4, pay as you go) ----------------------------------------


async def stop_pay_as_you_go(
    db: AsyncSession, user_ids: list[uuid.UUID], *, reason: str, now: datetime
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Stop every live pay-as-you-go instance of these accounts: each run is settled to this
    second and leaves `running` in this transaction (billing ends there); jobs then release the
    machines. Returns what stopped, by account."""
    if not user_ids:
        return {}
    instances = list(
        await db.scalars(
            select(Instance)
            .where(
                Instance.user_id.in_(user_ids),
                Instance.billing == Billing.PAY_AS_YOU_GO,
                Instance.status.in_((InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)),
            )
            .order_by(Instance.id)
            .with_for_update()
        )
    )
    await metering.settle(db, [i.id for i in instances], now=now)
    stopped: dict[uuid.UUID, list[uuid.UUID]] = {}
    for instance in instances:
        if instance.status is InstanceStatus.RUNNING:
            instance.run_ended_at = now
        _transition(db, instance, InstanceStatus.STOPPING, reason=reason, now=now)
        request_job(db, JobName.STOP_INSTANCE, str(instance.id), reason)
        stopped.setdefault(instance.user_id, []).append(instance.id)
    if instances:
        log.warning(
            "pay_as_you_go_instances_stopped",
            reason=reason,
            users=[str(u) for u in stopped],
            instances=len(instances),
        )
    return stopped


async def stop_for_credit(db: AsyncSession, user_ids: list[uuid.UUID], *, now: datetime) -> int:
    """The credit cap: stop these accounts' pay-as-you-go instances, and tell each owner in one
    e-mail naming what stopped (keyed by those instances, so sent once). Returns how many."""
    stopped = await stop_pay_as_you_go(db, user_ids, reason=CREDIT_CAP_REASON, now=now)
    for user_id, ids in stopped.items():
        request_job(db, JobName.SEND_CREDIT_STOP_EMAIL, str(user_id), ",".join(map(str, ids)))
    count = sum(map(len, stopped.values()))
    if count:
        after_commit(db, lambda: CREDIT_STOPS.inc(count))
    return count


async def enforce_credit_cap(
    db: AsyncSession, user_id: uuid.UUID, *, margin_seconds: int, now: datetime
) -> int:
    """At the account's cap, stop its instances; before it, look again when it is due (the
    moment moves with every launch, stop, top-up and charge). Returns how many were stopped."""
    figures = await metering.live_figures(db, user_id, now=now)
    due_in = figures.seconds_until_cap(margin_seconds)
    if due_in == 0:
        return await stop_for_credit(db, [user_id], now=now)
    if due_in is not None:
        request_job(
            db, JobName.ENFORCE_CREDIT_CAP, str(user_id), at=now + timedelta(seconds=due_in)
        )
    return 0


async def sweep_credit_caps(db: AsyncSession, *, margin_seconds: int, now: datetime) -> int:
    """What the cap's jobs would have done, read from PostgreSQL alone: a lost job, or a
    flushed Redis, cannot let an instance run on credit its account does not have."""
    capped = await metering.accounts_at_cap(db, now=now, margin_seconds=margin_seconds)
    return await stop_for_credit(db, capped, now=now)


# Sweeps: what a lost job would have left undone --------------------------------------------------


def orders_awaiting_instances() -> Select[uuid.UUID]:
    """Orders owed instances that are not all made yet. `provisioned_at` is set once they are, so
    this reads a few rows of a partial index however many orders there are."""
    return select(Order.id).where(
        Order.status.in_(OWED_INSTANCES),
        Order.paid_at.is_not(None),  # the partial index's condition, for the planner to match
        Order.provisioned_at.is_(None),
    )


def orders_awaiting_payment(*, now: datetime) -> Select[uuid.UUID]:
    """Pending orders whose checkout is still open: their payment may be being confirmed (the
    customer can reach the success page before Stripe's webhook)."""
    return select(Order.id).where(
        Order.status == OrderStatus.PENDING,
        Order.checkout_session_id.is_not(None),
        Order.checkout_expires_at > now,
    )


class Expected(StrEnum):
    """Why a customer's console expects a change it does not show yet."""

    INSTANCES = "instances"  # a paid order awaits some (a job makes them moments after payment)
    PAYMENT = "payment"  # a checkout is open: once it is paid, its instances follow
    EXTENSION = "extension"  # an extension is being paid or applied: a stop time moves


async def instances_expected(
    db: AsyncSession, *, user_id: uuid.UUID, now: datetime
) -> Expected | None:
    """Whether (and why) more instances of this user, or more hours for one, are on their way:
    new machines first, as they change the list most."""
    extension = orders.is_extension(Order.id)
    paid, paying, extending = (
        await db.execute(
            select(
                orders_awaiting_instances().where(Order.user_id == user_id, ~extension).exists(),
                orders_awaiting_payment(now=now)
                .where(Order.user_id == user_id, ~extension)
                .exists(),
                orders_awaiting_instances().where(Order.user_id == user_id, extension).exists()
                | orders_awaiting_payment(now=now)
                .where(Order.user_id == user_id, extension)
                .exists(),
            )
        )
    ).one()
    if paid:
        return Expected.INSTANCES
    if paying:
        return Expected.PAYMENT
    return Expected.EXTENSION if extending else None


async def sweep(db: AsyncSession, *, now: datetime, stale_after: timedelta) -> dict[str, int]:
    overdue = list(
        await db.scalars(
            select(Instance.id)
            .where(Instance.status == InstanceStatus.RUNNING, Instance.expires_at <= now)
            .limit(500)
        )
    )
    for instance_id in overdue:
        request_job(db, JobName.EXPIRE_INSTANCE, str(instance_id))
    stuck = (
        await db.execute(
            select(Instance.id, Instance.status)
            .where(
                Instance.status.in_((InstanceStatus.PROVISIONING, InstanceStatus.STOPPING)),
                Instance.updated_at < now - stale_after,
            )
            .limit(500)
        )
    ).all()
    for instance_id, status in stuck:
        if status is InstanceStatus.PROVISIONING:
            request_job(db, JobName.POLL_INSTANCE, str(instance_id))
        else:
            request_job(db, JobName.STOP_INSTANCE, str(instance_id), "stopping did not finish")
    short = list(
        await db.scalars(
            orders_awaiting_instances()
            .where(Order.paid_at < now - stale_after)
            .order_by(Order.paid_at)
            .limit(200)
        )
    )
    for order_id in short:
        request_job(db, JobName.PROVISION_ORDER, str(order_id))
    # Instances still live after their order was refunded in full or disputed: the stop jobs
    # the payment event asked for were lost.
    # Per live instance (few, found by status), its order's changes (by order): a lateral
    # aggregate, which the planner cannot turn into a read of every status change ever made.
    undone = (
        select(
            func.count().label("changes"),
            func.bool_or(OrderStatusChange.to_status == OrderStatus.DISPUTED).label("disputed"),
        )
        .where(
            OrderStatusChange.order_id == Instance.order_id,
            OrderStatusChange.to_status.in_((OrderStatus.REFUNDED, OrderStatus.DISPUTED)),
            OrderStatusChange.changed_at < now - stale_after,
        )
        .lateral()
    )
    unstopped = (
        await db.execute(
            select(Instance.id, undone.c.disputed)
            .join(undone, true())
            .where(
                Instance.status.in_((InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)),
                undone.c.changes > 0,
            )
            .limit(500)
        )
    ).all()
    for instance_id, disputed in unstopped:
        if disputed:
            request_job(db, JobName.SUSPEND_INSTANCE, str(instance_id), "payment disputed")
        else:
            request_job(db, JobName.STOP_INSTANCE, str(instance_id), "order refunded")
    # A deleted account's machines stop: no one can reach them or pay for them any more. The
    # deletion asks for this sweep at once; the schedule repeats it should that job be lost.
    # Per live instance (few, found by status), its owner by primary key: a join would let the
    # planner read every user.
    owner_deleted_at = select(User.deleted_at).where(User.id == Instance.user_id).scalar_subquery()
    orphaned = list(
        await db.scalars(
            select(Instance.id)
            .where(
                Instance.status.in_((InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)),
                owner_deleted_at.is_not(None),
            )
            .limit(500)
        )
    )
    for instance_id in orphaned:
        request_job(db, JobName.STOP_INSTANCE, str(instance_id), ACCOUNT_DELETED_REASON)
    return {
        "overdue": len(overdue),
        "stuck": len(stuck),
        "unprovisioned_orders": len(short),
        "unstopped": len(unstopped),
        "orphaned": len(orphaned),
    }


# A running fixed-hours instance this close to its end is warned of, on the dashboard and once by
# e-mail: its disk is erased when it stops.
EXPIRY_WARNING = timedelta(hours=1)
EXPIRY_WARNING_BATCH = 500


def expiry_warning_key(instance_id: uuid.UUID, expires_at: datetime) -> str:
    """Once per instance and end: were its paid time ever extended, the new end warns again."""
    return f"expiry_warning:{instance_id}:{expires_at.astimezone(UTC):%Y%m%dT%H%M%S}"


async def send_expiry_warnings(
    db: AsyncSession, *, backend: MailBackend, public_base_url: str, now: datetime
) -> int:
    """E-mail the owner of every running fixed-hours instance that stops within the hour. Read
    from PostgreSQL by a periodic job rather than a job asked for at each start: a lost job or
    a flushed Redis cannot skip a warning, and the dedupe key sends each one once. Returns how
    many were sent."""
    due = await db.execute(
        select(Instance.id, Instance.name, Instance.expires_at, User.email)
        .join(User, User.id == Instance.user_id)
        .where(
            Instance.status == InstanceStatus.RUNNING,
            Instance.billing == Billing.FIXED_HOURS,
            Instance.expires_at > now,
            Instance.expires_at <= now + EXPIRY_WARNING,
            User.deleted_at.is_(None),
        )
        .order_by(Instance.expires_at)
        .limit(EXPIRY_WARNING_BATCH)
    )
    dashboard = f"{public_base_url.rstrip('/')}/dashboard"
    sent = 0
    for instance_id, name, expires_at, email in due:
        assert expires_at is not None  # selected by it
        body = "\n".join(
            [
                f"Your machine {name} stops at {expires_at:%Y-%m-%d %H:%M} UTC, when its paid"
                " time is up. Its disk is erased then: copy off anything you want to keep.",
                "",
                f"To keep it running, extend it: {dashboard}/instances/{instance_id}/extend",
                "",
                f"Your instances: {dashboard}",
            ]
        )
        sent += await send_email(
            db,
            backend=backend,
            dedupe_key=expiry_warning_key(instance_id, expires_at),
            recipient=email,
            subject=f"Your machine {name} stops in 1 hour; its disk will be erased",
            body=body,
            now=now,
        )
    return sent


# Reading ------------------------------------------------------------------------------------------


class InstanceFacts(Protocol):
    """What the readers below use of an instance: a loaded `Instance`, or a `ListedInstance`."""

    @property
    def status(self) -> InstanceStatus: ...

    @property
    def billing(self) -> str: ...

    @property
    def paid_seconds(self) -> int | None: ...

    @property
    def paid_cents(self) -> int | None: ...

    @property
    def rate_millicents_per_hour(self) -> int | None: ...

    @property
    def started_at(self) -> datetime | None: ...

    @property
    def expires_at(self) -> datetime | None: ...

    @property
    def run_ended_at(self) -> datetime | None: ...

    @property
    def terminated_at(self) -> datetime | None: ...

    @property
    def ip_address(self) -> str | None: ...

    @property
    def ssh_user(self) -> str | None: ...

    @property
    def ssh_port(self) -> int | None: ...

    @property
    def image_slug(self) -> str | None: ...

    @property
    def image_name(self) -> str | None: ...

    @property
    def image_versions(self) -> Sequence[Mapping[str, Any]] | None: ...


@dataclass(frozen=True, slots=True)
class Usage:
    remaining_seconds: int | None  # None: pay as you go, with no safety stop
    cost_so_far_cents: int
    used_seconds: int = 0
    cost_so_far_millicents: int = 0


def _seconds_between(start: datetime, end: datetime) -> int:
    return max(int((end - start).total_seconds()), 0)  # whole seconds, as metering counts them


def usage(instance: InstanceFacts, *, now: datetime) -> Usage:
    """Time left of what was paid (or before the safety stop), and what the instance has cost:
    for pay as you go, exactly what its run is charged (settled or not)."""
    rate = instance.rate_millicents_per_hour
    if rate is not None:
        ends = [now] + [t for t in (instance.run_ended_at, instance.expires_at) if t is not None]
        used = _seconds_between(instance.started_at, min(ends)) if instance.started_at else 0
        remaining = None  # until it runs, or with no safety stop
        if instance.expires_at is not None:
            remaining = 0 if instance.run_ended_at else _seconds_between(now, instance.expires_at)
        millicents = metering.owed_millicents(rate, used)
        return Usage(
            remaining_seconds=remaining,
            cost_so_far_cents=round_half_up(millicents, MILLICENTS_PER_CENT),
            used_seconds=used,
            cost_so_far_millicents=millicents,
        )
    paid_seconds, paid_cents = instance.paid_seconds or 0, instance.paid_cents or 0
    if instance.started_at is None or instance.expires_at is None:
        return Usage(remaining_seconds=paid_seconds, cost_so_far_cents=0)
    end = min(now, instance.terminated_at or now, instance.expires_at)
    used = _seconds_between(instance.started_at, end)
    remaining = 0 if instance.terminated_at else max(paid_seconds - used, 0)
    cost = min(round_half_up(paid_cents * used, paid_seconds), paid_cents)
    return Usage(
        remaining_seconds=remaining,
        cost_so_far_cents=cost,
        used_seconds=used,
        cost_so_far_millicents=cost * MILLICENTS_PER_CENT,
    )


def unused_time_millicents(instance: InstanceFacts, *, now: datetime) -> int:
    """What a fixed-hours instance its owner ends now gives back as credit (before its order's
    cap): floor(paid × unused seconds / paid seconds); all of it if it never started."""
    paid_seconds, paid_cents = instance.paid_seconds or 0, instance.paid_cents or 0
    if not paid_seconds:
        return 0
    used = 0
    if instance.started_at is not None:
        used = min(_seconds_between(instance.started_at, now), paid_seconds)
    return paid_cents * MILLICENTS_PER_CENT * (paid_seconds - used) // paid_seconds


def is_metered_running(instance: InstanceFacts) -> bool:
    """Running pay as you go: what it costs moves every second."""
    return instance.status is InstanceStatus.RUNNING and instance.billing == Billing.PAY_AS_YOU_GO


# A key comment that names a file (`id_ed25519_work`): safe to paste into a shell as it is.
_KEY_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def ssh_command(instance: InstanceFacts, keys: Sequence[InstanceSshKey] = ()) -> str | None:
    """How to log in to a running instance (`ssh ubuntu@203.0.113.7`); None while it cannot be
    reached. When its first key's comment is a file name (`id_ed25519_work`), the command
    names that private key: `ssh -i ~/.ssh/id_ed25519_work ubuntu@203.0.113.7`; a comment like
    `ada@laptop` (ssh-keygen's default) names no file, so the command leaves the choice to ssh."""
    if (
        instance.status is not InstanceStatus.RUNNING
        or instance.ip_address is None
        or instance.ssh_user is None
    ):
        return None
    comment = keys[0].comment if keys else None
    identity = (
        f"-i ~/.ssh/{comment} " if comment is not None and _KEY_FILE_NAME.fullmatch(comment) else ""
    )
    port = "" if instance.ssh_port in (None, 22) else f"-p {instance.ssh_port} "
    return f"ssh {identity}{port}{instance.ssh_user}@{instance.ip_address}"


class ListedInstance(NamedTuple):
    """An instance as lists show it (the API's `InstanceOut`, the console, an order's page),
    read without the ORM; its ids as text."""

    id: str
    billing: str
    order_id: str | None
    name: str
    gpu_slug: str
    gpu_name: str
    gpu_count: int
    vcpus: int
    storage_gb: int
    region: str
    status: InstanceStatus
    provider_id: str | None
    ip_address: str | None
    ssh_user: str | None
    ssh_port: int | None
    started_at: datetime | None
    expires_at: datetime | None
    run_ended_at: datetime | None
    terminated_at: datetime | None
    failure_reason: str | None
    paid_seconds: int | None
    paid_cents: int | None
    rate_millicents_per_hour: int | None
    max_hours: int | None
    image_slug: str | None
    image_name: str | None
    image_versions: list[dict[str, str]] | None
    user_id: str
    created_at: datetime


# The instance lists, newest first: built once with bound parameters (docs/architecture.md §3,
# reads on hot paths).
_instances = Instance.__table__.c
_COLUMNS = select(*shown_columns(Instance.__table__, ListedInstance._fields))
_LISTED = _COLUMNS.where(_instances.user_id == bindparam("user_id"))
_USERS_INSTANCES = _LISTED.order_by(_instances.created_at.desc(), _instances.index)
_ORDERS_INSTANCES = _LISTED.where(_instances.order_id == bindparam("order_id")).order_by(
    _instances.created_at.desc(), _instances.index
)


async def list_instances(
    db: AsyncConnection, *, user_id: uuid.UUID, order_id: uuid.UUID | None = None
) -> list[ListedInstance]:
    """The user's instances (of one order, if given), newest first: one statement, read without
    the ORM (a list only shows)."""
    if order_id is None:
        found = await db.execute(_USERS_INSTANCES, {"user_id": user_id})
    else:
        found = await db.execute(_ORDERS_INSTANCES, {"user_id": user_id, "order_id": order_id})
    return [ListedInstance._make(row) for row in found]


async def instance_page(
    db: AsyncConnection,
    *,
    user_id: uuid.UUID | None,
    status: InstanceStatus | None,
    gpu: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[ListedInstance], str | None]:
    """Every customer's instances (or one customer's), newest first, of a status and a GPU
    model when given: one page, and the cursor of the next (None on the last). Its statement
    holds only the filters given, so the planner picks the index that answers them (every
    instance by time, or those of one status or customer); operators list instances seldom."""
    conditions = []
    if user_id is not None:
        conditions.append(_instances.user_id == user_id)
    if status is not None:
        conditions.append(_instances.status == status)
    if gpu is not None:
        conditions.append(_instances.gpu_slug == gpu)
    return await read_page(
        db,
        newest_first(_COLUMNS.where(*conditions), _instances.created_at, _instances.id),
        {},
        make=ListedInstance._make,
        limit=limit,
        cursor=cursor,
    )


async def operator_stop(
    db: AsyncSession, actor: audit.Actor, *, instance_id: uuid.UUID, reason: str, now: datetime
) -> Instance:
    """An operator force-stops a customer's instance with their reason (its history says so,
    unused paid time comes back as credit); audited when it stopped it. Asking again changes
    nothing."""
    instance, stopped_from = await request_stop(
        db, user_id=None, instance_id=instance_id, now=now, reason=f"{OPERATOR_STOP_PREFIX}{reason}"
    )
    if stopped_from is not None:
        await audit.record(
            db,
            actor,
            audit.AuditAction.INSTANCE_STOPPED,
            target_type="instance",
            target_id=str(instance_id),
            before={"status": stopped_from.value},
            after={"status": instance.status.value},
            reason=reason,
            now=now,
        )
    return instance


async def get_instance(
    db: AsyncSession, *, user_id: uuid.UUID, instance_id: uuid.UUID
) -> tuple[Instance, list[InstanceStatusChange]]:
    instance = await db.scalar(
        select(Instance).where(Instance.id == instance_id, Instance.user_id == user_id)
    )
    if instance is None:
        raise NotFound("No such instance.")
    history = await db.scalars(
        select(InstanceStatusChange)
        .where(InstanceStatusChange.instance_id == instance.id)
        .order_by(InstanceStatusChange.id)
    )
    return instance, list(history)
