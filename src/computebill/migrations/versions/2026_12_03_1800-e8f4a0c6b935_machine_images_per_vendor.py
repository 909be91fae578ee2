"""machine images per vendor

Revision ID: e8f4a0c6b935
Revises: d7e3f9b5a824
Create Date: 2026-12-03 18:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e8f4a0c6b935"
down_revision: str | None = "d7e3f9b5a824"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "machine_images",
        sa.Column(
            "vendor",
            postgresql.ENUM("nvidia", "amd", name="gpu_vendor", create_type=False),
            nullable=True,
        ),
    )
    # Images with CUDA are NVIDIA's; the rest stay offered for every GPU, and a default among
    # them steps down (the seed then gives each vendor its default).
    op.execute(
        "UPDATE machine_images SET vendor = 'nvidia'"
        """ WHERE versions @> '[{"name": "CUDA"}]'::jsonb"""
    )
    op.execute("UPDATE machine_images SET is_default = false WHERE vendor IS NULL")
    op.drop_index("uq_machine_images_default", table_name="machine_images")
    op.create_index(
        "uq_machine_images_default",
        "machine_images",
        ["vendor"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_check_constraint(
        op.f("ck_machine_images_default_has_vendor"),
        "machine_images",
        "vendor IS NOT NULL OR NOT is_default",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_machine_images_default_has_vendor"), "machine_images", type_="check"
    )
    # One default again: NVIDIA's, as before vendors.
    op.execute(
        "UPDATE machine_images SET is_default = false"
        " WHERE is_default AND vendor IS DISTINCT FROM 'nvidia'"
    )
    op.drop_index("uq_machine_images_default", table_name="machine_images")
    op.create_index(
        "uq_machine_images_default",
        "machine_images",
        ["is_default"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.drop_column("machine_images", "vendor")
