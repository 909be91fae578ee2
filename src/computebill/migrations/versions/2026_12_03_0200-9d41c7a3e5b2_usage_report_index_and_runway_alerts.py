"""usage report index and runway alerts

Revision ID: 9d41c7a3e5b2
Revises: 246a47e2f176
Create Date: 2026-12-03 02:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9d41c7a3e5b2"
down_revision: str | None = "246a47e2f176"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_credit_entries_usage_user_id_created_at",
        "credit_entries",
        ["user_id", "created_at"],
        unique=False,
        postgresql_include=["instance_id", "amount_millicents"],
        postgresql_where=sa.text("kind = 'usage'"),
    )
    op.create_table(
        "credit_runway_alerts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("threshold_seconds", sa.Integer(), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("alerts_sent", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_credit_runway_alerts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "threshold_seconds", name=op.f("pk_credit_runway_alerts")
        ),
    )


def downgrade() -> None:
    op.drop_table("credit_runway_alerts")
    op.drop_index(
        "ix_credit_entries_usage_user_id_created_at",
        table_name="credit_entries",
        postgresql_include=["instance_id", "amount_millicents"],
        postgresql_where=sa.text("kind = 'usage'"),
    )
