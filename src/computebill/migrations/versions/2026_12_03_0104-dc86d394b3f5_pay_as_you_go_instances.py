"""pay as you go instances

Revision ID: dc86d394b3f5
Revises: 4aed7ed58722
Create Date: 2026-12-03 01:04:42.889389+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dc86d394b3f5"
down_revision: str | None = "4aed7ed58722"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "instances",
        sa.Column("billing", sa.Text(), server_default=sa.text("'fixed_hours'"), nullable=False),
    )
    op.add_column(
        "instances", sa.Column("rate_millicents_per_hour", sa.BigInteger(), nullable=True)
    )
    op.add_column("instances", sa.Column("max_hours", sa.Integer(), nullable=True))
    op.add_column(
        "instances",
        sa.Column(
            "billed_through_seconds", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column("instances", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.add_column("instances", sa.Column("run_ended_at", sa.DateTime(timezone=True), nullable=True))
    op.alter_column("instances", "order_id", existing_type=sa.UUID(), nullable=True)
    op.alter_column("instances", "order_line_id", existing_type=sa.UUID(), nullable=True)
    op.alter_column("instances", "paid_seconds", existing_type=sa.BIGINT(), nullable=True)
    op.alter_column("instances", "paid_cents", existing_type=sa.BIGINT(), nullable=True)
    op.create_index(
        "ix_instances_metered_live",
        "instances",
        ["user_id"],
        unique=False,
        postgresql_where=sa.text(
            "billing = 'pay_as_you_go' AND status IN ('provisioning', 'running')"
        ),
    )
    op.create_unique_constraint(
        "uq_instances_user_id_idempotency_key", "instances", ["user_id", "idempotency_key"]
    )
    op.create_check_constraint(
        op.f("ck_instances_billing_fits_columns"),
        "instances",
        "billing IN ('fixed_hours', 'pay_as_you_go')"
        " AND (billing <> 'fixed_hours' OR (order_id IS NOT NULL AND order_line_id IS NOT NULL"
        " AND paid_seconds IS NOT NULL AND paid_cents IS NOT NULL"
        " AND rate_millicents_per_hour IS NULL AND max_hours IS NULL))"
        " AND (billing <> 'pay_as_you_go' OR (order_id IS NULL AND order_line_id IS NULL"
        " AND paid_seconds IS NULL AND paid_cents IS NULL"
        " AND rate_millicents_per_hour > 0))",
    )
    op.create_index(
        "ix_credit_entries_order_id",
        "credit_entries",
        ["order_id"],
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )
    op.create_index(
        "ix_credit_entries_instance_id",
        "credit_entries",
        ["instance_id"],
        postgresql_where=sa.text("instance_id IS NOT NULL"),
    )
    op.create_check_constraint(
        op.f("ck_instances_billed_through_not_negative"), "instances", "billed_through_seconds >= 0"
    )


def downgrade() -> None:
    # Refused while pay-as-you-go instances exist: the ledger's entries refer to them, and it
    # is append-only, so they cannot be dropped here.
    op.drop_constraint(op.f("ck_instances_billed_through_not_negative"), "instances", type_="check")
    op.drop_index("ix_credit_entries_instance_id", table_name="credit_entries")
    op.drop_index("ix_credit_entries_order_id", table_name="credit_entries")
    op.drop_constraint(op.f("ck_instances_billing_fits_columns"), "instances", type_="check")
    op.drop_constraint("uq_instances_user_id_idempotency_key", "instances", type_="unique")
    op.drop_index(
        "ix_instances_metered_live",
        table_name="instances",
        postgresql_where=sa.text(
            "billing = 'pay_as_you_go' AND status IN ('provisioning', 'running')"
        ),
    )
    op.alter_column("instances", "paid_cents", existing_type=sa.BIGINT(), nullable=False)
    op.alter_column("instances", "paid_seconds", existing_type=sa.BIGINT(), nullable=False)
    op.alter_column("instances", "order_line_id", existing_type=sa.UUID(), nullable=False)
    op.alter_column("instances", "order_id", existing_type=sa.UUID(), nullable=False)
    op.drop_column("instances", "run_ended_at")
    op.drop_column("instances", "idempotency_key")
    op.drop_column("instances", "billed_through_seconds")
    op.drop_column("instances", "max_hours")
    op.drop_column("instances", "rate_millicents_per_hour")
    op.drop_column("instances", "billing")
