"""machine images

Revision ID: b1d7e3f9a260
Revises: 9e4c7b2a5d18
Create Date: 2026-12-03 14:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b1d7e3f9a260"
down_revision: str | None = "9e4c7b2a5d18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "machine_images",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("versions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
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
        sa.CheckConstraint(
            "active OR NOT is_default", name=op.f("ck_machine_images_default_is_active")
        ),
        sa.CheckConstraint(
            "jsonb_typeof(versions) = 'array' AND jsonb_array_length(versions) >= 1",
            name=op.f("ck_machine_images_versions_listed"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machine_images")),
        sa.UniqueConstraint("slug", name=op.f("uq_machine_images_slug")),
    )
    op.create_index(
        "uq_machine_images_default",
        "machine_images",
        ["is_default"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.add_column("cart_items", sa.Column("image_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_cart_items_image_id_machine_images"),
        "cart_items",
        "machine_images",
        ["image_id"],
        ["id"],
    )
    op.add_column("order_lines", sa.Column("image_slug", sa.String(length=40), nullable=True))
    op.add_column("instances", sa.Column("image_slug", sa.String(length=40), nullable=True))
    op.add_column("instances", sa.Column("image_name", sa.String(length=80), nullable=True))
    op.add_column(
        "instances",
        sa.Column("image_versions", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "simulated_machines", sa.Column("image_slug", sa.String(length=40), nullable=True)
    )
    op.add_column(
        "simulated_machines",
        sa.Column("image_versions", postgresql.ARRAY(sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("simulated_machines", "image_versions")
    op.drop_column("simulated_machines", "image_slug")
    op.drop_column("instances", "image_versions")
    op.drop_column("instances", "image_name")
    op.drop_column("instances", "image_slug")
    op.drop_column("order_lines", "image_slug")
    op.drop_constraint(
        op.f("fk_cart_items_image_id_machine_images"), "cart_items", type_="foreignkey"
    )
    op.drop_column("cart_items", "image_id")
    op.drop_index("uq_machine_images_default", table_name="machine_images")
    op.drop_table("machine_images")
