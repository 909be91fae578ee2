from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from computebill.sshkeys.service import MAX_KEY_CHARS


class SshKeyIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )
    # Longer than any key accepted, so a too-long key is refused with its own code.
    public_key: str = Field(max_length=2 * MAX_KEY_CHARS, description="One line of a .pub file")


class SshKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    fingerprint: str = Field(description="OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf`")
    type: str = Field(validation_alias="key_type")
    public_key: str = Field(description="The key in OpenSSH's one-line form, without comment")
    comment: str | None
    created_at: datetime


class SshKeyList(BaseModel):
    ssh_keys: list[SshKeyOut]
