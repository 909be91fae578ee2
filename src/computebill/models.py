"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from computebill.auth.models import AuthEvent, AuthSession, RefreshToken, User
from computebill.cart.models import CartItem
from computebill.catalog.models import GpuModel, PricingPolicy
from computebill.db import Base
from computebill.ops.models import WorkerHeartbeat

__all__ = [
    "AuthEvent",
    "AuthSession",
    "Base",
    "CartItem",
    "GpuModel",
    "PricingPolicy",
    "RefreshToken",
    "User",
    "WorkerHeartbeat",
]
