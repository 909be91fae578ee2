"""The caller's compute instances."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic_core import to_json

from computebill.audit import service as audit
from computebill.auth.dependencies import (
    ClientDep,
    CurrentAdminWithRecentLogin,
    CurrentStaff,
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
from computebill.instances.models import InstanceStatus
from computebill.instances.schemas import (
    InstanceChangeOut,
    InstanceDetailOut,
    InstanceList,
    InstanceOut,
    InstanceSshKeyOut,
    OperatorInstancePage,
    OperatorStopIn,
    PayAsYouGoIn,
    instance_fields,
    instance_out,
    operator_instance_out,
)
from computebill.paging import PageCursor, PageLimit

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
    its `max_hours` safety stop), installed with the machine image `image` names (the default
    when omitted; 422 `unknown_image` for one not offered). 402 `insufficient_credit`, with
    `shortfall_cents`, when the live balance would not last `MIN_RUNWAY_SECONDS` at the new
    burn rate."""
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
        image=body.image,
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


@admin_router.get("/instances", response_model=OperatorInstancePage)
async def every_instance(
    staff: CurrentStaff,
    db: ReadConnectionDep,
    clock: ClockDep,
    status: Annotated[InstanceStatus | None, Query()] = None,
    gpu: Annotated[str | None, Query(max_length=40, description="A GPU model's slug")] = None,
    customer: Annotated[uuid.UUID | None, Query(description="A customer's id")] = None,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> OperatorInstancePage:
    """Every customer's instances, newest first, a page at a time, by status, GPU model and
    customer. Admins and support."""
    now = clock.now()
    instances, next_cursor = await service.instance_page(
        db, user_id=customer, status=status, gpu=gpu, limit=limit, cursor=cursor
    )
    return OperatorInstancePage(
        instances=[operator_instance_out(i, service.usage(i, now=now)) for i in instances],
        next_cursor=next_cursor,
    )


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
    instance = await service.operator_stop(
        db,
        await audit.signed_in_actor(db, admin.user_id, client),
        instance_id=instance_id,
        reason=body.reason,
        now=now,
    )
    return instance_out(instance, service.usage(instance, now=now))
