"""instance extensions: order lines that buy more hours for an existing instance, and the
ledger's `purchase` kind (hours bought with credit)

Revision ID: d7e3f9b5a824
Revises: c6d2e8a4f713
Create Date: 2026-12-03 17:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d7e3f9b5a824"
down_revision: str | None = "c6d2e8a4f713"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KINDS = "'top_up', 'top_up_reversal', 'usage', 'unused_time', 'grant', 'expiry', 'adjustment'"
_OLD_CHARGES = "'top_up_reversal', 'usage', 'expiry'"


def _kind_checks(kinds: str, charges: str) -> None:
    # Widening a CHECK only allows more: the previous release, which never posts `purchase`,
    # runs unchanged on it.
    kind, sign = op.f("ck_credit_entries_kind"), op.f("ck_credit_entries_amount_sign_fits_kind")
    op.drop_constraint(kind, "credit_entries", type_="check")
    op.drop_constraint(sign, "credit_entries", type_="check")
    op.create_check_constraint(kind, "credit_entries", f"kind IN ({kinds})")
    op.create_check_constraint(
        sign,
        "credit_entries",
        "(kind NOT IN ('top_up', 'unused_time', 'grant') OR amount_millicents > 0)"
        f" AND (kind NOT IN ({charges}) OR amount_millicents < 0)",
    )


def upgrade() -> None:
    op.add_column("order_lines", sa.Column("extends_instance_id", sa.Uuid(), nullable=True))
    op.add_column(
        "order_lines", sa.Column("extends_instance_name", sa.String(length=80), nullable=True)
    )
    op.create_foreign_key(
        op.f("fk_order_lines_extends_instance_id_instances"),
        "order_lines",
        "instances",
        ["extends_instance_id"],
        ["id"],
    )
    op.create_index(
        "ix_order_lines_extends_instance_id",
        "order_lines",
        ["extends_instance_id"],
        postgresql_where=sa.text("extends_instance_id IS NOT NULL"),
    )
    _kind_checks(f"{_OLD_KINDS}, 'purchase'", f"{_OLD_CHARGES}, 'purchase'")


def downgrade() -> None:
    _kind_checks(_OLD_KINDS, _OLD_CHARGES)
    op.drop_index("ix_order_lines_extends_instance_id", table_name="order_lines")
    op.drop_constraint(
        op.f("fk_order_lines_extends_instance_id_instances"), "order_lines", type_="foreignkey"
    )
    op.drop_column("order_lines", "extends_instance_name")
    op.drop_column("order_lines", "extends_instance_id")
