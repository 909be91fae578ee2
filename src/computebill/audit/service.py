"""Writing and reading the audit log (docs/architecture.md §4, the audit log).

An entry is written in the same transaction as the action it records, so an action that rolls
back leaves no entry, and one that commits cannot lack one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, cast

from sqlalchemy import String, Table, Uuid, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.audit.models import AuditEntry
from computebill.auth.models import User
from computebill.auth.service import Client
from computebill.db import shown_columns
from computebill.paging import newest_first, read_page, unless_null


class AuditAction(StrEnum):
    ROLE_GRANTED = "role.granted"
    ROLE_REVOKED = "role.revoked"
    ORDER_REFUNDED = "order.refunded"
    CREDIT_POSTED = "credit.posted"
    EVENT_REPLAYED = "event.replayed"
    GPU_MODEL_CHANGED = "gpu_model.changed"
    GPU_MODEL_ADDED = "gpu_model.added"
    IMAGE_CHANGED = "machine_image.changed"
    IMAGE_ADDED = "machine_image.added"
    SESSIONS_REVOKED = "sessions.revoked"
    INSTANCE_STOPPED = "instance.stopped"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an operator signed in (`user_id`, named by their address) or the command line
    (no user id; named by the operating-system account that ran it)."""

    user_id: uuid.UUID | None
    name: str
    client: Client


async def signed_in_actor(db: AsyncSession, user_id: uuid.UUID, client: Client) -> Actor:
    email = await db.scalar(select(User.email).where(User.id == user_id))
    return Actor(user_id=user_id, name=email or str(user_id), client=client)


def command_line_actor(operator: str) -> Actor:
    return Actor(
        user_id=None,
        name=f"command line ({operator})",
        client=Client(ip_address="", user_agent="computebill"),
    )


async def record(
    db: AsyncSession,
    actor: Actor,
    action: AuditAction,
    *,
    target_type: str,
    target_id: str,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    db.add(
        AuditEntry(
            actor_id=actor.user_id,
            actor=actor.name[:320],
            action=action.value,
            target_type=target_type,
            target_id=target_id[:100],
            before=before,
            after=after,
            reason=reason,
            ip_address=actor.client.ip_address[:64],
            user_agent=actor.client.user_agent[:512],
            created_at=now,
        )
    )
    await db.flush()


_audit = cast(Table, AuditEntry.__table__)


class AuditRow(NamedTuple):
    """An entry as the log shows it, read without the ORM; ids as text."""

    id: str
    actor_id: str | None
    actor: str
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    ip_address: str
    user_agent: str
    created_at: datetime


# Each filter is off when its parameter is NULL; the list walks the time index newest first.
_AUDIT_LIST = newest_first(
    select(*shown_columns(_audit, AuditRow._fields)).where(
        unless_null(_audit.c.actor_id, "actor_id", Uuid()),
        unless_null(_audit.c.actor, "actor", String()),
        unless_null(_audit.c.action, "action", String()),
    ),
    _audit.c.created_at,
    _audit.c.id,
)


async def audit_page(
    db: AsyncConnection,
    *,
    actor: str | None,
    action: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AuditRow], str | None]:
    """Entries newest first; `actor` is an operator's id or the name the entry gives them."""
    actor_id: uuid.UUID | None = None
    actor_name: str | None = None
    if actor is not None:
        try:
            actor_id = uuid.UUID(actor)
        except ValueError:
            actor_name = actor.strip().lower()
    return await read_page(
        db,
        _AUDIT_LIST,
        {"actor_id": actor_id, "actor": actor_name, "action": action},
        make=AuditRow._make,
        limit=limit,
        cursor=cursor,
    )


_LATEST_OF_TARGET_TYPE = (
    select(*shown_columns(_audit, AuditRow._fields))
    .where(_audit.c.target_type == bindparam("target_type"))
    .order_by(_audit.c.created_at.desc(), _audit.c.id.desc())
    .limit(bindparam("limit"))
)


async def latest_of_target_type(
    db: AsyncConnection, *, target_type: str, limit: int
) -> list[AuditRow]:
    """The latest entries about one kind of thing (every GPU model's, say), newest first."""
    found = await db.execute(_LATEST_OF_TARGET_TYPE, {"target_type": target_type, "limit": limit})
    return [AuditRow._make(row) for row in found]
