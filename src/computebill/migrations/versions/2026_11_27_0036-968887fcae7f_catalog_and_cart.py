"""catalog and cart

Revision ID: 968887fcae7f
Revises: d3806b3a7d10
Create Date: 2026-11-27 00:36:36.739627+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "968887fcae7f"
down_revision: str | None = "d3806b3a7d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gpu_models",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("vendor", sa.Enum("nvidia", "amd", name="gpu_vendor"), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("architecture", sa.String(length=40), nullable=False),
        sa.Column("memory_gb", sa.Integer(), nullable=False),
        sa.Column("memory_type", sa.String(length=20), nullable=False),
        sa.Column("memory_bandwidth_gbps", sa.Integer(), nullable=False),
        sa.Column("fp16_tflops", sa.Integer(), nullable=False),
        sa.Column("fp8_tflops", sa.Integer(), nullable=True),
        sa.Column("tdp_watts", sa.Integer(), nullable=False),
        sa.Column("form_factor", sa.String(length=40), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("price_per_gpu_hour_cents", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
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
            "price_per_gpu_hour_cents BETWEEN 0 AND 10000000",
            name=op.f("ck_gpu_models_gpu_rate_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_models")),
        sa.UniqueConstraint("slug", name=op.f("uq_gpu_models_slug")),
    )
    op.create_table(
        "pricing_policy",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("vcpu_hour_millicents", sa.BigInteger(), nullable=False),
        sa.Column("storage_gb_hour_millicents", sa.BigInteger(), nullable=False),
        sa.Column("gpu_counts", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("vcpu_options", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("storage_gb_options", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("regions", sa.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("default_region", sa.String(length=40), nullable=False),
        sa.Column("min_hours", sa.Integer(), nullable=False),
        sa.Column("max_hours", sa.Integer(), nullable=False),
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
        sa.CheckConstraint("id = 1", name=op.f("ck_pricing_policy_single_row")),
        sa.CheckConstraint(
            "min_hours >= 1 AND max_hours >= min_hours AND max_hours <= 8760",
            name=op.f("ck_pricing_policy_hours_range"),
        ),
        sa.CheckConstraint(
            "storage_gb_hour_millicents BETWEEN 0 AND 100000000",
            name=op.f("ck_pricing_policy_storage_rate_range"),
        ),
        sa.CheckConstraint(
            "vcpu_hour_millicents BETWEEN 0 AND 100000000",
            name=op.f("ck_pricing_policy_vcpu_rate_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pricing_policy")),
    )
    op.create_table(
        "cart_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("gpu_model_id", sa.Uuid(), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("storage_gb", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("added_gpu_hour_cents", sa.BigInteger(), nullable=False),
        sa.Column("added_vcpu_hour_millicents", sa.BigInteger(), nullable=False),
        sa.Column("added_storage_gb_hour_millicents", sa.BigInteger(), nullable=False),
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
        sa.CheckConstraint("quantity BETWEEN 1 AND 8", name=op.f("ck_cart_items_quantity_range")),
        sa.ForeignKeyConstraint(
            ["gpu_model_id"], ["gpu_models.id"], name=op.f("fk_cart_items_gpu_model_id_gpu_models")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_cart_items_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cart_items")),
        sa.UniqueConstraint(
            "user_id",
            "gpu_model_id",
            "gpu_count",
            "vcpus",
            "storage_gb",
            "hours",
            "region",
            name="uq_cart_items_configuration",
        ),
    )
    op.create_index(op.f("ix_cart_items_user_id"), "cart_items", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cart_items_user_id"), table_name="cart_items")
    op.drop_table("cart_items")
    op.drop_table("pricing_policy")
    op.drop_table("gpu_models")
    sa.Enum(name="gpu_vendor").drop(op.get_bind(), checkfirst=True)
