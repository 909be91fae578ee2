from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr

from computebill.auth.models import Scope

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
    # What an earlier login answered: a correct password from a device the account signed in
    # from before passes the account's failed-login limit.
    device_token: StrictStr | None = Field(default=None, max_length=200)


CodeField = Field(min_length=1, max_length=32)


class SecondStepRequest(_Request):
    challenge: StrictStr = Field(min_length=1, max_length=256)
    code: StrictStr = CodeField


class EnableTwoFactorRequest(_Request):
    code: StrictStr = CodeField


class DisableTwoFactorRequest(_Request):
    password: StrictStr = PasswordField
    code: StrictStr = CodeField


class TwoFactorSetupOut(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class RefreshRequest(_Request):
    refresh_token: str = Field(min_length=1, max_length=256)


class ChangePasswordRequest(_Request):
    current_password: str = PasswordField
    new_password: str = PasswordField


class PasswordConfirmation(_Request):
    password: str = PasswordField


class LinkTokenRequest(_Request):
    """A token from a link we e-mailed (verify the address; with a new password, reset it)."""

    token: StrictStr = Field(min_length=1, max_length=256)


class PasswordResetRequest(_Request):
    email: StrictStr = Field(max_length=320)


class PasswordResetConfirmRequest(LinkTokenRequest):
    new_password: StrictStr = PasswordField


class ChangeNameRequest(_Request):
    name: StrictStr | None = Field(max_length=200)


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
    two_factor_enabled: bool
    email_verified: bool


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int
    user: UserOut
    # At sign-up and login: send it back with later logins from this device (None on refresh).
    device_token: str | None = None


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


class ApiKeyIn(_Request):
    name: StrictStr = Field(min_length=1, max_length=80)
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working: in the future, within a year."
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters after `cb_live_`.")
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute.")
    last_used_ip: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The whole key, shown this once: only its HMAC is kept.")


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyOut]
