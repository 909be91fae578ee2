"""credit grants

Revision ID: 7c2e91f0b4d3
Revises: dc86d394b3f5
Create Date: 2026-12-03 01:15:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c2e91f0b4d3"
down_revision: str | None = "dc86d394b3f5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("grant_entry_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("amount_millicents", sa.BigInteger(), nullable=False),
        sa.Column("remaining_millicents", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint("amount_millicents > 0", name=op.f("ck_credit_grants_amount_positive")),
        sa.CheckConstraint(
            "remaining_millicents >= 0 AND remaining_millicents <= amount_millicents",
            name=op.f("ck_credit_grants_remaining_within_amount"),
        ),
        sa.CheckConstraint(
            "expired_at IS NULL OR (expires_at IS NOT NULL AND remaining_millicents = 0)",
            name=op.f("ck_credit_grants_expired_is_spent"),
        ),
        sa.ForeignKeyConstraint(
            ["grant_entry_id"],
            ["credit_entries.id"],
            name=op.f("fk_credit_grants_grant_entry_id_credit_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["credit_accounts.user_id"],
            name=op.f("fk_credit_grants_user_id_credit_accounts"),
        ),
        sa.PrimaryKeyConstraint("grant_entry_id", name=op.f("pk_credit_grants")),
    )
    op.create_index(
        "ix_credit_grants_spending_order",
        "credit_grants",
        ["user_id", "expires_at", "created_at", "grant_entry_id"],
        unique=False,
        postgresql_where=sa.text("remaining_millicents > 0"),
    )
    op.create_index(
        "ix_credit_grants_expiring",
        "credit_grants",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("remaining_millicents > 0 AND expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_credit_grants_expiring", table_name="credit_grants")
    op.drop_index("ix_credit_grants_spending_order", table_name="credit_grants")
    op.drop_table("credit_grants")
