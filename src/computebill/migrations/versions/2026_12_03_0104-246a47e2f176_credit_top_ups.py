"""credit top-ups

Revision ID: 246a47e2f176
Revises: 7c2e91f0b4d3
Create Date: 2026-12-03 01:04:27.649984+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "246a47e2f176"
down_revision: str | None = "7c2e91f0b4d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credit_top_ups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "paid",
                "expired",
                "payment_failed",
                "partially_refunded",
                "refunded",
                "disputed",
                name="credit_top_up_status",
            ),
            nullable=False,
        ),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refunded_cents", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("checkout_url", sa.String(length=2048), nullable=True),
        sa.Column("checkout_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_credit_top_ups_amount_positive")),
        sa.CheckConstraint(
            "refunded_cents >= 0 AND refunded_cents <= amount_cents",
            name=op.f("ck_credit_top_ups_refunded_within_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_credit_top_ups_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_top_ups")),
        sa.UniqueConstraint(
            "checkout_session_id", name=op.f("uq_credit_top_ups_checkout_session_id")
        ),
        sa.UniqueConstraint("payment_intent_id", name=op.f("uq_credit_top_ups_payment_intent_id")),
    )
    op.create_index(
        "ix_credit_top_ups_status_created_at",
        "credit_top_ups",
        ["status", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_credit_top_ups_user_id_idempotency_key",
        "credit_top_ups",
        ["user_id", "idempotency_key"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_credit_top_ups_user_id_idempotency_key", table_name="credit_top_ups")
    op.drop_index("ix_credit_top_ups_status_created_at", table_name="credit_top_ups")
    op.drop_table("credit_top_ups")
    sa.Enum(name="credit_top_up_status").drop(op.get_bind(), checkfirst=True)
