"""customer search indexes

Revision ID: c3e8f1a6d402
Revises: 4a7d2e9c1b60
Create Date: 2026-12-03 11:30:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c3e8f1a6d402"
down_revision: str | None = "4a7d2e9c1b60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_users_email_pattern ON users (email varchar_pattern_ops)")
    op.execute(
        "CREATE INDEX ix_users_name_words ON users "
        "USING gin (to_tsvector('simple'::regconfig, coalesce(name, '')))"
    )


def downgrade() -> None:
    op.drop_index("ix_users_name_words", table_name="users")
    op.drop_index("ix_users_email_pattern", table_name="users")
