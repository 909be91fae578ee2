"""instances

Revision ID: cb8a10b32518
Revises: 5e694c760eed
Create Date: 2026-11-27 00:58:26.995797+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cb8a10b32518"
down_revision: str | None = "5e694c760eed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "simulated_machines",
        sa.Column("provider_id", sa.String(length=100), nullable=False),
        sa.Column("launch_key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("region", sa.String(length=40), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fails", sa.Boolean(), nullable=False),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_simulated_machines")),
        sa.UniqueConstraint("launch_key", name=op.f("uq_simulated_machines_launch_key")),
    )
    op.create_index(
        "uq_simulated_machines_live_ip",
        "simulated_machines",
        ["ip_address"],
        unique=True,
        postgresql_where=sa.text("terminated_at IS NULL"),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("order_line_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("gpu_slug", sa.String(length=40), nullable=False),
        sa.Column("gpu_name", sa.String(length=80), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("storage_gb", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=40), nullable=False),
        sa.Column("paid_seconds", sa.BigInteger(), nullable=False),
        sa.Column("paid_cents", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "provisioning",
                "running",
                "stopping",
                "terminated",
                "failed",
                "suspended",
                name="instance_status",
            ),
            nullable=False,
        ),
        sa.Column("provider_id", sa.String(length=100), nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("ssh_user", sa.String(length=40), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("launch_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_instances_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["order_line_id"],
            ["order_lines.id"],
            name=op.f("fk_instances_order_line_id_order_lines"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_instances_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.UniqueConstraint("order_line_id", "index", name="uq_instances_order_line_id_index"),
        sa.UniqueConstraint("provider_id", name=op.f("uq_instances_provider_id")),
    )
    op.create_index(op.f("ix_instances_order_id"), "instances", ["order_id"], unique=False)
    op.create_index(
        "ix_instances_status_expires_at", "instances", ["status", "expires_at"], unique=False
    )
    op.create_index(
        "ix_instances_user_id_created_at", "instances", ["user_id", "created_at"], unique=False
    )
    op.create_table(
        "instance_status_changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column(
            "from_status",
            sa.Enum(
                "provisioning",
                "running",
                "stopping",
                "terminated",
                "failed",
                "suspended",
                name="instance_status",
            ),
            nullable=True,
        ),
        sa.Column(
            "to_status",
            sa.Enum(
                "provisioning",
                "running",
                "stopping",
                "terminated",
                "failed",
                "suspended",
                name="instance_status",
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_instance_status_changes_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_status_changes")),
    )
    op.create_index(
        op.f("ix_instance_status_changes_instance_id"),
        "instance_status_changes",
        ["instance_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_instance_status_changes_instance_id"), table_name="instance_status_changes"
    )
    op.drop_table("instance_status_changes")
    op.drop_index("ix_instances_user_id_created_at", table_name="instances")
    op.drop_index("ix_instances_status_expires_at", table_name="instances")
    op.drop_index(op.f("ix_instances_order_id"), table_name="instances")
    op.drop_table("instances")
    op.drop_index(
        "uq_simulated_machines_live_ip",
        table_name="simulated_machines",
        postgresql_where=sa.text("terminated_at IS NULL"),
    )
    op.drop_table("simulated_machines")
    sa.Enum(name="instance_status").drop(op.get_bind(), checkfirst=True)
