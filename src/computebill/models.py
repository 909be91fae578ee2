"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from computebill.db import Base
from computebill.ops.models import WorkerHeartbeat

__all__ = ["Base", "WorkerHeartbeat"]
