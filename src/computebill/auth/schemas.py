from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

# Generous bounds, checked before any hashing: a 1 MB "password" is refused, not hashed.
PasswordField = Field(min_length=1, max_length=1024)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignupRequest(_Request):
    email: str = Field(max_length=320)
    password: str = PasswordField
    name: str | None = Field(default=None, max_length=200)


class LoginRequest(_Request):
    email: str = Field(max_length=320)
    password: str = PasswordField


class RefreshRequest(_Request):
    refresh_token: str = Field(min_length=1, max_length=256)


class ChangePasswordRequest(_Request):
    current_password: str = PasswordField
    new_password: str = PasswordField


class DeleteAccountRequest(_Request):
    password: str = PasswordField


class LinkTokenRequest(_Request):
    """A token from a link we e-mailed (verify the address; with a new password, reset it)."""

    token: StrictStr = Field(min_length=1, max_length=256)


class PasswordResetRequest(_Request):
    email: StrictStr = Field(max_length=320)


class PasswordResetConfirmRequest(LinkTokenRequest):
    new_password: StrictStr = PasswordField


class ChangeEmailRequest(_Request):
    new_email: StrictStr = Field(max_length=320)
    password: StrictStr = PasswordField


class PasswordResetAccepted(BaseModel):
    detail: str


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None


class MeOut(UserOut):
    email_verified: bool


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int
    user: UserOut


class SessionOut(BaseModel):
    id: uuid.UUID
    user_agent: str
    ip_address: str
    created_at: datetime
    last_used_at: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime
    current: bool


class SessionList(BaseModel):
    sessions: list[SessionOut]


class RevokedCount(BaseModel):
    revoked: int
