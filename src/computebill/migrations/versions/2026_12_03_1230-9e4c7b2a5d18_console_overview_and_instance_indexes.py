"""console overview and instance indexes

Revision ID: 9e4c7b2a5d18
Revises: 6b2f9d4e8a31
Create Date: 2026-12-03 12:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9e4c7b2a5d18"
down_revision: str | None = "6b2f9d4e8a31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_instances_created_at_id", "instances", ["created_at", "id"])
    op.create_index(
        "ix_instances_status_created_at_id", "instances", ["status", "created_at", "id"]
    )
    op.create_index(
        "ix_instances_run_end",
        "instances",
        [sa.text("(least(run_ended_at, terminated_at, expires_at))")],
    )
    op.create_index("ix_orders_paid_at", "orders", ["paid_at"])
    op.create_index("ix_refunds_created_at", "refunds", ["created_at"])
    op.create_index("ix_credit_top_ups_paid_at", "credit_top_ups", ["paid_at"])
    op.create_index(
        "ix_credit_accounts_negative",
        "credit_accounts",
        ["balance_millicents"],
        postgresql_where=sa.text("balance_millicents < 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_credit_accounts_negative", table_name="credit_accounts")
    op.drop_index("ix_credit_top_ups_paid_at", table_name="credit_top_ups")
    op.drop_index("ix_refunds_created_at", table_name="refunds")
    op.drop_index("ix_orders_paid_at", table_name="orders")
    op.drop_index("ix_instances_run_end", table_name="instances")
    op.drop_index("ix_instances_status_created_at_id", table_name="instances")
    op.drop_index("ix_instances_created_at_id", table_name="instances")
