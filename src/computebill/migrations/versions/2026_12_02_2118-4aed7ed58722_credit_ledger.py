"""credit ledger

Revision ID: 4aed7ed58722
Revises: 3fc1b7c1dfae
Create Date: 2026-12-02 21:18:53.240342+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4aed7ed58722"
down_revision: str | None = "3fc1b7c1dfae"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The ledger is append-only (docs/architecture.md §4): a correction is a new entry. Row-level,
# so TRUNCATE and DROP (the tests' throwaway databases) are not concerned.
APPEND_ONLY_FUNCTION = """
CREATE FUNCTION credit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_entries is append-only (% refused): corrections are new entries', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER credit_entries_append_only BEFORE UPDATE OR DELETE ON credit_entries
FOR EACH ROW EXECUTE FUNCTION credit_entries_append_only()
"""


def upgrade() -> None:
    op.create_table(
        "credit_accounts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "balance_millicents", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
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
            name=op.f("fk_credit_accounts_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_credit_accounts")),
    )
    op.create_table(
        "credit_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount_millicents", sa.BigInteger(), nullable=False),
        sa.Column("balance_after_millicents", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("payment_intent_id", sa.Text(), nullable=True),
        sa.Column("admin_user_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('top_up', 'top_up_reversal', 'usage', 'unused_time', 'grant', 'expiry',"
            " 'adjustment')",
            name=op.f("ck_credit_entries_kind"),
        ),
        sa.CheckConstraint(
            "amount_millicents <> 0", name=op.f("ck_credit_entries_amount_not_zero")
        ),
        sa.CheckConstraint(
            "(kind NOT IN ('top_up', 'unused_time', 'grant') OR amount_millicents > 0)"
            " AND (kind NOT IN ('top_up_reversal', 'usage', 'expiry') OR amount_millicents < 0)",
            name=op.f("ck_credit_entries_amount_sign_fits_kind"),
        ),
        sa.CheckConstraint(
            "kind <> 'adjustment' OR (reason IS NOT NULL AND btrim(reason) <> '')",
            name=op.f("ck_credit_entries_adjustment_has_reason"),
        ),
        sa.CheckConstraint(
            "expires_at IS NULL OR kind = 'grant'",
            name=op.f("ck_credit_entries_only_grants_expire"),
        ),
        sa.ForeignKeyConstraint(
            ["admin_user_id"], ["users.id"], name=op.f("fk_credit_entries_admin_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_credit_entries_instance_id_instances"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_credit_entries_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["credit_accounts.user_id"],
            name=op.f("fk_credit_entries_user_id_credit_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_credit_entries_idempotency_key")),
    )
    op.create_index(
        "ix_credit_entries_user_id_created_at_id",
        "credit_entries",
        ["user_id", sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
    )
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER credit_entries_append_only ON credit_entries")
    op.execute("DROP FUNCTION credit_entries_append_only()")
    op.drop_index("ix_credit_entries_user_id_created_at_id", table_name="credit_entries")
    op.drop_table("credit_entries")
    op.drop_table("credit_accounts")
