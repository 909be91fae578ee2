"""usage report index

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


def downgrade() -> None:
    op.drop_index(
        "ix_credit_entries_usage_user_id_created_at",
        table_name="credit_entries",
        postgresql_include=["instance_id", "amount_millicents"],
        postgresql_where=sa.text("kind = 'usage'"),
    )
