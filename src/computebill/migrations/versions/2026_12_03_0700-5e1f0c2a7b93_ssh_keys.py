"""ssh keys

Revision ID: 5e1f0c2a7b93
Revises: b7e4c1a9d2f0
Create Date: 2026-12-03 07:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5e1f0c2a7b93"
down_revision: str | None = "b7e4c1a9d2f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("key_type", sa.String(length=40), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("comment", sa.String(length=255), nullable=True),
        sa.Column("fingerprint", sa.String(length=60), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ssh_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_keys")),
        sa.UniqueConstraint("user_id", "fingerprint", name="uq_ssh_keys_user_id_fingerprint"),
    )
    op.create_table(
        "instance_ssh_keys",
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=60), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("comment", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_instance_ssh_keys_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", "fingerprint", name=op.f("pk_instance_ssh_keys")),
    )
    for table in ("cart_items", "order_lines"):
        op.add_column(
            table,
            sa.Column(
                "ssh_key_ids",
                postgresql.ARRAY(sa.Uuid()),
                server_default=sa.text("'{}'"),
                nullable=False,
            ),
        )
    op.add_column(
        "simulated_machines",
        sa.Column(
            "ssh_public_keys",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("simulated_machines", "ssh_public_keys")
    op.drop_column("order_lines", "ssh_key_ids")
    op.drop_column("cart_items", "ssh_key_ids")
    op.drop_table("instance_ssh_keys")
    op.drop_table("ssh_keys")
