"""outbox emails

Revision ID: 5e694c760eed
Revises: 5fb595e8cd58
Create Date: 2026-11-27 00:55:30.106930+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e694c760eed"
down_revision: str | None = "5fb595e8cd58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_emails",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_emails")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_emails_dedupe_key")),
    )
    op.create_index(
        op.f("ix_outbox_emails_created_at"), "outbox_emails", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_emails_created_at"), table_name="outbox_emails")
    op.drop_table("outbox_emails")
