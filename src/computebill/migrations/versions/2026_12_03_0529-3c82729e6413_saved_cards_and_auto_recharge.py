"""saved cards and auto-recharge: payment_methods, auto_recharge_rules and their attempts, and
a top-up's source

Revision ID: 3c82729e6413
Revises: 9d41c7a3e5b2
Create Date: 2026-12-03 05:29:21.347106+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c82729e6413"
down_revision: str | None = "9d41c7a3e5b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_payment_method_id", sa.String(length=255), nullable=False),
        sa.Column("brand", sa.String(length=40), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
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
            ["user_id"],
            ["users.id"],
            name=op.f("fk_payment_methods_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        sa.UniqueConstraint(
            "stripe_payment_method_id", name=op.f("uq_payment_methods_stripe_payment_method_id")
        ),
    )
    op.create_index("ix_payment_methods_user_id", "payment_methods", ["user_id"], unique=False)
    op.create_table(
        "auto_recharge_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("crossing", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("top_up_id", sa.Uuid(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("stripe_idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("stripe_payment_method_id", sa.String(length=255), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column(
            "status",
            sa.Enum("pending", "succeeded", "failed", name="auto_recharge_attempt_status"),
            nullable=False,
        ),
        sa.Column("failure_code", sa.String(length=100), nullable=True),
        sa.Column("decline_code", sa.String(length=100), nullable=True),
        sa.Column("failure_message", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["top_up_id"],
            ["credit_top_ups.id"],
            name=op.f("fk_auto_recharge_attempts_top_up_id_credit_top_ups"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auto_recharge_attempts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auto_recharge_attempts")),
        sa.UniqueConstraint(
            "payment_intent_id", name=op.f("uq_auto_recharge_attempts_payment_intent_id")
        ),
        sa.UniqueConstraint(
            "stripe_idempotency_key", name=op.f("uq_auto_recharge_attempts_stripe_idempotency_key")
        ),
        sa.UniqueConstraint("top_up_id", name=op.f("uq_auto_recharge_attempts_top_up_id")),
    )
    op.create_index(
        "ix_auto_recharge_attempts_pending",
        "auto_recharge_attempts",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_auto_recharge_attempts_user_id_created_at",
        "auto_recharge_attempts",
        ["user_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "auto_recharge_rules",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("monthly_max_cents", sa.BigInteger(), nullable=True),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("crossings", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("paused_reason", sa.String(length=300), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("in_flight_top_up_id", sa.Uuid(), nullable=True),
        sa.Column("monthly_max_notified", sa.String(length=7), nullable=True),
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
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_auto_recharge_rules_amount_positive")),
        sa.CheckConstraint(
            "monthly_max_cents IS NULL OR monthly_max_cents > 0",
            name=op.f("ck_auto_recharge_rules_monthly_max_positive"),
        ),
        sa.CheckConstraint(
            "threshold_cents >= 0", name=op.f("ck_auto_recharge_rules_threshold_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["in_flight_top_up_id"],
            ["credit_top_ups.id"],
            name=op.f("fk_auto_recharge_rules_in_flight_top_up_id_credit_top_ups"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auto_recharge_rules_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_auto_recharge_rules")),
    )
    op.create_index(
        "ix_auto_recharge_rules_active",
        "auto_recharge_rules",
        ["user_id"],
        unique=False,
        postgresql_where=sa.text("enabled AND paused_reason IS NULL"),
    )
    op.add_column(
        "credit_top_ups",
        sa.Column("source", sa.String(length=20), server_default="checkout", nullable=False),
    )
    op.add_column(
        "credit_top_ups",
        sa.Column("save_card", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_credit_top_ups_source"),
        "credit_top_ups",
        "source IN ('checkout', 'auto_recharge')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_credit_top_ups_source"), "credit_top_ups", type_="check")
    op.drop_column("credit_top_ups", "save_card")
    op.drop_column("credit_top_ups", "source")
    op.drop_index(
        "ix_auto_recharge_rules_active",
        table_name="auto_recharge_rules",
        postgresql_where=sa.text("enabled AND paused_reason IS NULL"),
    )
    op.drop_table("auto_recharge_rules")
    op.drop_index(
        "ix_auto_recharge_attempts_user_id_created_at", table_name="auto_recharge_attempts"
    )
    op.drop_index(
        "ix_auto_recharge_attempts_pending",
        table_name="auto_recharge_attempts",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("auto_recharge_attempts")
    sa.Enum(name="auto_recharge_attempt_status").drop(op.get_bind())
    op.drop_index("ix_payment_methods_user_id", table_name="payment_methods")
    op.drop_table("payment_methods")
