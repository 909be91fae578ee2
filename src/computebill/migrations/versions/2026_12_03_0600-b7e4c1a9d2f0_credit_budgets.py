"""credit budgets

Revision ID: b7e4c1a9d2f0
Revises: 8063e3b17cba
Create Date: 2026-12-03 06:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e4c1a9d2f0"
down_revision: str | None = "8063e3b17cba"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credit_budgets",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("monthly_limit_cents", sa.BigInteger(), nullable=False),
        sa.Column("stop_running", sa.Boolean(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("spent_millicents", sa.BigInteger(), nullable=False),
        sa.Column("counted_through_position", sa.BigInteger(), nullable=False),
        sa.Column("alerted_percent", sa.Integer(), nullable=False),
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
        sa.CheckConstraint(
            "monthly_limit_cents > 0", name=op.f("ck_credit_budgets_limit_positive")
        ),
        sa.CheckConstraint(
            "spent_millicents >= 0", name=op.f("ck_credit_budgets_spent_not_negative")
        ),
        sa.CheckConstraint(
            "alerted_percent IN (0, 80, 100)", name=op.f("ck_credit_budgets_alerted_percent_known")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_credit_budgets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_credit_budgets")),
    )
    # A budget's check reads only the usage entries posted since its watermark.
    op.create_index(
        "ix_credit_entries_usage_user_id_position",
        "credit_entries",
        ["user_id", "position"],
        unique=False,
        postgresql_include=["amount_millicents", "created_at"],
        postgresql_where=sa.text("kind = 'usage'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_credit_entries_usage_user_id_position",
        table_name="credit_entries",
        postgresql_include=["amount_millicents", "created_at"],
        postgresql_where=sa.text("kind = 'usage'"),
    )
    op.drop_table("credit_budgets")
