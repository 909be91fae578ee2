"""The caller's compute instances."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status
from pydantic_core import to_json

from computebill.audit import service as audit
from computebill.auth.dependencies import (
    ClientDep,
    CurrentAdminWithRecentLogin,
    InstancesWriteAccess,
    ReadAccess,
)
from computebill.catalog.service import validate_configuration
from computebill.deps import (
    CatalogDep,
    ClockDep,
    IdempotencyKey,
    ReadConnectionDep,
    SessionDep,
    SettingsDep,
)
from computebill.instances import service
from computebill.instances.metering import InsufficientCredit
from computebill.instances.schemas import (
    InstanceChangeOut,
    InstanceDetailOut,
    InstanceList,
    InstanceOut,
    InstanceSshKeyOut,
    OperatorStopIn,
    PayAsYouGoIn,
    instance_fields,
    instance_out,
)

router = APIRouter(prefix="/api/v1/instances", tags=["instances"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get("", response_model=InstanceList)
async def list_instances(principal: ReadAccess, db: ReadConnectionDep, clock: ClockDep) -> Response:
    now = clock.now()
    instances = await service.list_instances(db, user_id=principal.user_id)
    listed = [instance_fields(i, service.usage(i, now=now)) for i in instances]
    # Built here, so not validated again; InstanceList documents it (docs/architecture.md §3).
    return Response(to_json({"instances": listed}), media_type="application/json")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=InstanceOut,
    responses={402: {"description": InsufficientCredit.__doc__ or "insufficient_credit"}},
)
async def launch_pay_as_you_go(
    body: PayAsYouGoIn,
    principal: InstancesWriteAccess,
    db: SessionDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> InstanceOut:
    """Launch an instance billed by the second from the credit balance until it is stopped (or
    its `max_hours` safety stop). 402 `insufficient_credit`, with `shortfall_cents`, when the
    live balance would not last `MIN_RUNWAY_SECONDS` at the new burn rate."""
    now = clock.now()
    valid = validate_configuration(
        catalog,
        gpu=body.gpu,
        gpu_count=body.gpu_count,
        vcpus=body.vcpus,
        storage_gb=body.storage_gb,
        hours=body.max_hours,
        hours_field="max_hours",
        region=body.region,
    )
    instance = await service.launch_pay_as_you_go(
        db,
        catalog,
        valid,
        user_id=principal.user_id,
        max_hours=body.max_hours,
        ssh_key_ids=body.ssh_key_ids,
        idempotency_key=idempotency_key,
        min_runway_seconds=settings.min_runway_seconds,
        now=now,
    )
    return instance_out(instance, service.usage(instance, now=now))


@router.get("/{instance_id}", response_model=InstanceDetailOut)
async def get_instance(
    instance_id: uuid.UUID, principal: ReadAccess, db: SessionDep, clock: ClockDep
) -> InstanceDetailOut:
    instance, history = await service.get_instance(
        db, user_id=principal.user_id, instance_id=instance_id
    )
    keys = await service.instance_ssh_keys(db, instance.id)
    return InstanceDetailOut(
        **instance_out(instance, service.usage(instance, now=clock.now())).model_dump(),
        history=[InstanceChangeOut.model_validate(change) for change in history],
        ssh_keys=[InstanceSshKeyOut.model_validate(key) for key in keys],
    )


@router.post(
    "/{instance_id}/terminate", status_code=status.HTTP_202_ACCEPTED, response_model=InstanceOut
)
async def terminate(
    instance_id: uuid.UUID, principal: InstancesWriteAccess, db: SessionDep, clock: ClockDep
) -> InstanceOut:
    """Stop the instance early; it stops within seconds. Asking again changes nothing."""
    now = clock.now()
    instance, _ = await service.request_stop(
        db, user_id=principal.user_id, instance_id=instance_id, now=now
    )
    return instance_out(instance, service.usage(instance, now=now))


@admin_router.post(
    "/instances/{instance_id}/stop",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InstanceOut,
)
async def operator_stop(
    instance_id: uuid.UUID,
    body: OperatorStopIn,
    admin: CurrentAdminWithRecentLogin,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
) -> InstanceOut:
    """Force-stop a customer's instance with a reason (its history shows it; unused paid time
    comes back as credit). Admins with a recent login; audited. Asking again changes nothing."""
    now = clock.now()
    instance, stopped_from = await service.request_stop(
        db,
        user_id=None,
        instance_id=instance_id,
        now=now,
        reason=f"stopped by an operator: {body.reason}",
    )
    if stopped_from is not None:
        await audit.record(
            db,
            await audit.signed_in_actor(db, admin.user_id, client),
            audit.AuditAction.INSTANCE_STOPPED,
            target_type="instance",
            target_id=str(instance_id),
            before={"status": stopped_from.value},
            after={"status": instance.status.value},
            reason=body.reason,
            now=now,
        )
    return instance_out(instance, service.usage(instance, now=now))
