"""console order and event indexes

Revision ID: 6b2f9d4e8a31
Revises: c3e8f1a6d402
Create Date: 2026-12-03 12:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6b2f9d4e8a31"
down_revision: str | None = "c3e8f1a6d402"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_created_at_id", "orders", ["created_at", "id"])
    op.create_index(
        "ix_orders_needs_review",
        "orders",
        ["created_at"],
        postgresql_where=sa.text("needs_review"),
    )
    op.create_index("ix_stripe_events_received_at", "stripe_events", ["received_at"])
    op.create_index("ix_stripe_events_type_received_at", "stripe_events", ["type", "received_at"])
    op.create_index(
        "ix_stripe_events_object_id",
        "stripe_events",
        [sa.text("(payload #>> '{data,object,id}')")],
    )
    op.create_index(
        "ix_stripe_events_payment_intent",
        "stripe_events",
        [sa.text("(payload #>> '{data,object,payment_intent}')")],
    )


def downgrade() -> None:
    op.drop_index("ix_stripe_events_payment_intent", table_name="stripe_events")
    op.drop_index("ix_stripe_events_object_id", table_name="stripe_events")
    op.drop_index("ix_stripe_events_type_received_at", table_name="stripe_events")
    op.drop_index("ix_stripe_events_received_at", table_name="stripe_events")
    op.drop_index("ix_orders_needs_review", table_name="orders")
    op.drop_index("ix_orders_created_at_id", table_name="orders")
