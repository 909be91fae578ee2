from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    String,
    Uuid,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from computebill.db import Base, TimestampMixin


class User(TimestampMixin, Base):
    __tablename__ = "users"
    # The console's customer search: an address prefix (LIKE 'x%' needs the pattern operator
    # class, the database's collation not being C), or words of the name (`USER_NAME_WORDS`).
    __table_args__ = (
        Index("ix_users_email_pattern", "email", postgresql_ops={"email": "varchar_pattern_ops"}),
        Index(
            "ix_users_name_words",
            text("to_tsvector('simple'::regconfig, coalesce(name, ''))"),
            postgresql_using="gin",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Stored normalised (trimmed, lower-case), so the unique index is case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    # NULL once the account is deleted: nothing can log in as it again.
    password_hash: Mapped[bytes | None] = mapped_column(LargeBinary(60))
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # "user", "support" (the console, read-only) or "admin"; granted only from the command line,
    # never through the API.
    role: Mapped[str] = mapped_column(String(20), nullable=False, server_default="user")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the owner followed a verification link sent to `email`; NULL until then, and again
    # after the address changes. Buying needs it (auth.service.require_verified_email).
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Two-factor authentication (docs/architecture.md §6): TOTP secrets sealed by
    # `tokens.SecretBox`, never plain. The pending one waits for its first code; the active one
    # is set, with `totp_enabled_at`, once a code proved the authenticator holds it.
    totp_pending_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The time step of the last code accepted: a code of that step or an earlier one is refused.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


# The words of a user's name as the console's search matches them (word prefixes, any case): the
# expression of `ix_users_name_words`, with constants, not parameters, so the planner uses it.
USER_NAME_WORDS = func.to_tsvector(
    literal_column("'simple'::regconfig"), func.coalesce(User.name, literal_column("''"))
)


class RecoveryCode(Base):
    """A single-use code that stands in for a TOTP code; stored only as
    HMAC-SHA256(pepper, code)."""

    __tablename__ = "recovery_codes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginChallenge(Base):
    """The second step a login with a correct password owes when the account has two-factor
    authentication: short-lived and single-use, stored only as HMAC-SHA256(pepper, challenge)."""

    __tablename__ = "login_challenges"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthSession(TimestampMixin, Base):
    """One login on one device: a refresh-token family."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_agent: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    ip_address: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # When its owner last proved the password in it: the login, or a re-authentication. The
    # console's destructive actions need this to be recent (docs/architecture.md §8).
    authenticated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    idle_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    absolute_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(40))


class RefreshToken(Base):
    """A refresh token, stored only as HMAC-SHA256(pepper, token)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, nullable=False)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthEvent(Base):
    """Audit trail of authentication: who, which session, from where, when. Never secrets."""

    __tablename__ = "auth_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="SET NULL"), index=True
    )
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    ip_address: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    user_agent: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Scope(StrEnum):
    """What an API key may do (docs/architecture.md §8): reading everything the account can
    read, or one kind of write."""

    READ = "read"
    INSTANCES_WRITE = "instances:write"
    BILLING_WRITE = "billing:write"


class ApiKey(Base):
    """A customer's key for the JSON API, stored only as HMAC-SHA256(pepper, key)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    # The first characters after `cb_live_`: enough to tell keys apart in a list, no more.
    prefix: Mapped[str] = mapped_column(String(8), nullable=False)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, nullable=False)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_ip: Mapped[str | None] = mapped_column(String(64))


class AccountToken(Base):
    """A single-use link token e-mailed to an account's owner (verify the address, reset the
    password), stored only as HMAC-SHA256(pepper, token) like refresh tokens."""

    __tablename__ = "account_tokens"
    __table_args__ = (Index("ix_account_tokens_user_id_purpose", "user_id", "purpose"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    # "verify_email" or "password_reset" (auth.service.TokenPurpose).
    purpose: Mapped[str] = mapped_column(String(20), nullable=False)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True, nullable=False)
    # The address the link was sent to: once the account's address changes, the link is void.
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Set when the link is followed, or when a newer link of the same purpose replaces it.
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
