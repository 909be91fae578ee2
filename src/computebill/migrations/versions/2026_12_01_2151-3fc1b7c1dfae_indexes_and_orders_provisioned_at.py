"""indexes and orders provisioned_at

Revision ID: 3fc1b7c1dfae
Revises: cb8a10b32518
Create Date: 2026-12-01 21:51:26.674270+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3fc1b7c1dfae"
down_revision: str | None = "cb8a10b32518"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_auth_events_session_id"), "auth_events", ["session_id"], unique=False)
    op.create_index(
        op.f("ix_cart_items_gpu_model_id"), "cart_items", ["gpu_model_id"], unique=False
    )
    op.create_index(
        op.f("ix_order_lines_gpu_model_id"), "order_lines", ["gpu_model_id"], unique=False
    )
    op.add_column("orders", sa.Column("provisioned_at", sa.DateTime(timezone=True), nullable=True))
    # Orders that already have every instance they are owed; the sweep makes up the rest.
    op.execute(
        """
        UPDATE orders AS o SET provisioned_at = o.paid_at
        WHERE o.paid_at IS NOT NULL
          AND (SELECT coalesce(sum(l.quantity), 0) FROM order_lines AS l WHERE l.order_id = o.id)
              <= (SELECT count(*) FROM instances AS i WHERE i.order_id = o.id)
        """
    )
    op.create_index(
        "ix_orders_awaiting_instances",
        "orders",
        ["paid_at"],
        unique=False,
        postgresql_where=sa.text("paid_at IS NOT NULL AND provisioned_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_orders_awaiting_instances",
        table_name="orders",
        postgresql_where=sa.text("paid_at IS NOT NULL AND provisioned_at IS NULL"),
    )
    op.drop_column("orders", "provisioned_at")
    op.drop_index(op.f("ix_order_lines_gpu_model_id"), table_name="order_lines")
    op.drop_index(op.f("ix_cart_items_gpu_model_id"), table_name="cart_items")
    op.drop_index(op.f("ix_auth_events_session_id"), table_name="auth_events")
