"""The caller's compute instances."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status
from pydantic_core import to_json

from computebill.auth.dependencies import CurrentPrincipal
from computebill.deps import ClockDep, ReadConnectionDep, SessionDep
from computebill.instances import service
from computebill.instances.schemas import (
    InstanceChangeOut,
    InstanceDetailOut,
    InstanceList,
    InstanceOut,
    instance_fields,
    instance_out,
)

router = APIRouter(prefix="/api/v1/instances", tags=["instances"])


@router.get("", response_model=InstanceList)
async def list_instances(
    principal: CurrentPrincipal, db: ReadConnectionDep, clock: ClockDep
) -> Response:
    now = clock.now()
    instances = await service.list_instances(db, user_id=principal.user_id)
    listed = [instance_fields(i, service.usage(i, now=now)) for i in instances]
    # Built here, so not validated again; InstanceList documents it (docs/architecture.md §3).
    return Response(to_json({"instances": listed}), media_type="application/json")


@router.get("/{instance_id}", response_model=InstanceDetailOut)
async def get_instance(
    instance_id: uuid.UUID, principal: CurrentPrincipal, db: SessionDep, clock: ClockDep
) -> InstanceDetailOut:
    instance, history = await service.get_instance(
        db, user_id=principal.user_id, instance_id=instance_id
    )
    return InstanceDetailOut(
        **instance_out(instance, service.usage(instance, now=clock.now())).model_dump(),
        history=[InstanceChangeOut.model_validate(change) for change in history],
    )


@router.post(
    "/{instance_id}/terminate", status_code=status.HTTP_202_ACCEPTED, response_model=InstanceOut
)
async def terminate(
    instance_id: uuid.UUID, principal: CurrentPrincipal, db: SessionDep, clock: ClockDep
) -> InstanceOut:
    """Stop the instance early; it stops within seconds. Asking again changes nothing."""
    now = clock.now()
    instance = await service.request_stop(
        db, user_id=principal.user_id, instance_id=instance_id, now=now
    )
    return instance_out(instance, service.usage(instance, now=now))
