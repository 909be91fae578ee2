"""machine shapes and region cities

Revision ID: c6d2e8a4f713
Revises: b1d7e3f9a260
Create Date: 2026-12-03 17:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c6d2e8a4f713"
down_revision: str | None = "b1d7e3f9a260"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing models get a generic shape; `computebill seed` then sets the seeded models' own.
    op.add_column(
        "gpu_models",
        sa.Column("vcpus_per_gpu", sa.Integer(), server_default=sa.text("12"), nullable=False),
    )
    op.add_column(
        "gpu_models",
        sa.Column("ram_gb_per_gpu", sa.Integer(), server_default=sa.text("128"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_gpu_models_shape_range"),
        "gpu_models",
        "vcpus_per_gpu BETWEEN 1 AND 256 AND ram_gb_per_gpu BETWEEN 1 AND 4096",
    )
    op.add_column(
        "pricing_policy",
        sa.Column(
            "region_cities",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("pricing_policy", "region_cities")
    op.drop_constraint(op.f("ck_gpu_models_shape_range"), "gpu_models", type_="check")
    op.drop_column("gpu_models", "ram_gb_per_gpu")
    op.drop_column("gpu_models", "vcpus_per_gpu")
