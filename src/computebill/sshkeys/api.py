"""The caller's SSH keys (docs/architecture.md §8)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from computebill.auth.dependencies import InstancesWriteAccess, ReadAccess
from computebill.deps import SessionDep
from computebill.sshkeys import service
from computebill.sshkeys.schemas import SshKeyIn, SshKeyList, SshKeyOut

router = APIRouter(prefix="/api/v1/ssh-keys", tags=["ssh-keys"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SshKeyOut)
async def add_ssh_key(body: SshKeyIn, principal: InstancesWriteAccess, db: SessionDep) -> SshKeyOut:
    """Add a public key (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa of 2048 bits or
    more). 422 with a code naming what is wrong with it; 409 `ssh_key_exists`."""
    key = await service.add_key(
        db, user_id=principal.user_id, name=body.name.strip(), text=body.public_key
    )
    return SshKeyOut.model_validate(key)


@router.get("", response_model=SshKeyList)
async def list_ssh_keys(principal: ReadAccess, db: SessionDep) -> SshKeyList:
    keys = await service.list_keys(db, user_id=principal.user_id)
    return SshKeyList(ssh_keys=[SshKeyOut.model_validate(key) for key in keys])


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_ssh_key(
    key_id: uuid.UUID, principal: InstancesWriteAccess, db: SessionDep
) -> Response:
    """Delete a key; instances launched with it keep it."""
    await service.delete_key(db, user_id=principal.user_id, key_id=key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
