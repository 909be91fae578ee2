"""outbox email delivery

Revision ID: 3a9d6e2f4c17
Revises: 5e1f0c2a7b93
Create Date: 2026-12-03 08:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3a9d6e2f4c17"
down_revision: str | None = "5e1f0c2a7b93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox_emails", sa.Column("html_body", sa.Text(), nullable=True))
    # E-mails recorded before delivery was tracked were delivered when they were recorded.
    op.add_column(
        "outbox_emails",
        sa.Column("status", sa.String(length=10), nullable=False, server_default="sent"),
    )
    op.alter_column("outbox_emails", "status", server_default=None)
    op.add_column(
        "outbox_emails",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("outbox_emails", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column(
        "outbox_emails",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("outbox_emails", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE outbox_emails SET sent_at = created_at, attempts = 1")
    op.create_check_constraint(
        op.f("ck_outbox_emails_status_known"),
        "outbox_emails",
        "status IN ('queued', 'sent', 'failed')",
    )
    op.create_check_constraint(
        op.f("ck_outbox_emails_sent_at_when_sent"),
        "outbox_emails",
        "(status = 'sent') = (sent_at IS NOT NULL)",
    )
    op.create_index(
        "ix_outbox_emails_queued_next_attempt_at",
        "outbox_emails",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_outbox_emails_queued_next_attempt_at",
        table_name="outbox_emails",
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_constraint(op.f("ck_outbox_emails_sent_at_when_sent"), "outbox_emails", type_="check")
    op.drop_constraint(op.f("ck_outbox_emails_status_known"), "outbox_emails", type_="check")
    for column in ("sent_at", "next_attempt_at", "last_error", "attempts", "status", "html_body"):
        op.drop_column("outbox_emails", column)
