from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.db import Base, TimestampMixin


class InstanceStatus(StrEnum):
    PROVISIONING = "provisioning"
    RUNNING = "running"
    STOPPING = "stopping"
    TERMINATED = "terminated"
    FAILED = "failed"
    SUSPENDED = "suspended"  # stopped because the payment is disputed


class Billing(StrEnum):
    FIXED_HOURS = "fixed_hours"  # hours bought up front, with an order
    PAY_AS_YOU_GO = "pay_as_you_go"  # every second it runs, from the credit balance


# When an instance's run ended: the first of its stop, its termination and its expiry (PostgreSQL's
# least() skips NULLs; NULL when none is set). The overview's windows read it through its index.
RUN_END_SQL = "least(run_ended_at, terminated_at, expires_at)"


def _status_enum() -> SqlEnum:
    return SqlEnum(
        InstanceStatus, name="instance_status", values_callable=lambda e: [m.value for m in e]
    )


class Instance(TimestampMixin, Base):
    """One machine: of a paid order line (fixed hours), or launched on its own and paid from the
    credit balance by the second (pay as you go). (order_line_id, index) is unique: provisioning
    that runs twice creates nothing twice."""

    __tablename__ = "instances"
    __table_args__ = (
        UniqueConstraint("order_line_id", "index", name="uq_instances_order_line_id_index"),
        # A launch retried with the same Idempotency-Key finds the first instance.
        UniqueConstraint("user_id", "idempotency_key", name="uq_instances_user_id_idempotency_key"),
        CheckConstraint(
            "billing IN ('fixed_hours', 'pay_as_you_go')"
            " AND (billing <> 'fixed_hours' OR (order_id IS NOT NULL AND order_line_id IS NOT NULL"
            " AND paid_seconds IS NOT NULL AND paid_cents IS NOT NULL"
            " AND rate_millicents_per_hour IS NULL AND max_hours IS NULL))"
            " AND (billing <> 'pay_as_you_go' OR (order_id IS NULL AND order_line_id IS NULL"
            " AND paid_seconds IS NULL AND paid_cents IS NULL"
            " AND rate_millicents_per_hour > 0))",
            name="billing_fits_columns",
        ),
        CheckConstraint("billed_through_seconds >= 0", name="billed_through_not_negative"),
        # The settlement pass and the credit cap read the running pay-as-you-go instances only.
        Index(
            "ix_instances_metered_live",
            "user_id",
            postgresql_where=text(
                "billing = 'pay_as_you_go' AND status IN ('provisioning', 'running')"
            ),
        ),
        Index("ix_instances_status_expires_at", "status", "expires_at"),
        Index("ix_instances_user_id_created_at", "user_id", "created_at"),
        # The console's list of every instance, newest first: all of them, or of one status.
        Index("ix_instances_created_at_id", "created_at", "id"),
        Index("ix_instances_status_created_at_id", "status", "created_at", "id"),
        # When a run ended (NULL: not yet; least() skips NULLs): the overview's GPU time used
        # reads only the runs that reach into its windows.
        Index("ix_instances_run_end", text(f"({RUN_END_SQL})")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    billing: Mapped[Billing] = mapped_column(
        Text, nullable=False, server_default=text("'fixed_hours'"), default=Billing.FIXED_HOURS
    )
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"), index=True)
    order_line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("order_lines.id"))
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    gpu_slug: Mapped[str] = mapped_column(String(40), nullable=False)
    gpu_name: Mapped[str] = mapped_column(String(80), nullable=False)
    gpu_count: Mapped[int] = mapped_column(Integer, nullable=False)
    vcpus: Mapped[int] = mapped_column(Integer, nullable=False)
    storage_gb: Mapped[int] = mapped_column(Integer, nullable=False)
    region: Mapped[str] = mapped_column(String(40), nullable=False)
    # Fixed hours: what was bought for this instance.
    paid_seconds: Mapped[int | None] = mapped_column(BigInteger)
    paid_cents: Mapped[int | None] = mapped_column(BigInteger)
    # Pay as you go: the rate, fixed at launch; the optional safety stop; and how many seconds
    # of its run the ledger has charged (docs/architecture.md §4, pay as you go).
    rate_millicents_per_hour: Mapped[int | None] = mapped_column(BigInteger)
    max_hours: Mapped[int | None] = mapped_column(Integer)
    billed_through_seconds: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0"), default=0
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[InstanceStatus] = mapped_column(_status_enum(), nullable=False)
    provider_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    ssh_user: Mapped[str | None] = mapped_column(String(40))
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    launch_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    polls: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When it stopped running (a stop asked for, the credit cap, a suspension): billing ends here.
    run_ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    # What its machine is installed with, as the image was when the instance was made (a later
    # change to the catalog's image leaves it); None for instances from before images.
    image_slug: Mapped[str | None] = mapped_column(String(40))
    image_name: Mapped[str | None] = mapped_column(String(80))
    image_versions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)


class InstanceStatusChange(Base):
    __tablename__ = "instance_status_changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    instance_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), nullable=False, index=True
    )
    from_status: Mapped[InstanceStatus | None] = mapped_column(_status_enum())
    to_status: Mapped[InstanceStatus] = mapped_column(_status_enum(), nullable=False)
    reason: Mapped[str] = mapped_column(String(200), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class InstanceSshKey(Base):
    """A public key put on an instance's machine, copied when the instance was made: deleting
    the key from the account later leaves it on the machines launched with it."""

    __tablename__ = "instance_ssh_keys"

    instance_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True
    )
    fingerprint: Mapped[str] = mapped_column(String(60), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    public_key: Mapped[str] = mapped_column(Text, nullable=False)
    comment: Mapped[str | None] = mapped_column(String(255))


class SimulatedMachine(Base):
    """The simulated provider's own state: in PostgreSQL, so it survives restarts."""

    __tablename__ = "simulated_machines"
    __table_args__ = (
        # An address is reused once its machine is gone, never shared by two live ones.
        Index(
            "uq_simulated_machines_live_ip",
            "ip_address",
            unique=True,
            postgresql_where=text("terminated_at IS NULL"),
        ),
    )

    provider_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    # The launch request's key (our instance id): launching twice returns the same machine.
    launch_key: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    region: Mapped[str] = mapped_column(String(40), nullable=False)
    ip_address: Mapped[str] = mapped_column(String(45), nullable=False)
    launched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ready_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    fails: Mapped[bool] = mapped_column(nullable=False, default=False)
    # The public keys the launch asked to authorize, as authorized_keys lines.
    ssh_public_keys: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'"), default=list
    )
    # The image the launch asked for: its slug and its components (`Ubuntu 24.04`, …).
    image_slug: Mapped[str | None] = mapped_column(String(40))
    image_versions: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
