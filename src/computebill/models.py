"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from computebill.auth.models import AuthEvent, AuthSession, RefreshToken, User
from computebill.cart.models import CartItem
from computebill.catalog.models import GpuModel, PricingPolicy
from computebill.db import Base
from computebill.ops.models import WorkerHeartbeat
from computebill.orders.models import Order, OrderLine, OrderStatusChange, Refund
from computebill.payments.models import StripeCustomer, StripeEvent

__all__ = [
    "AuthEvent",
    "AuthSession",
    "Base",
    "CartItem",
    "GpuModel",
    "Order",
    "OrderLine",
    "OrderStatusChange",
    "PricingPolicy",
    "RefreshToken",
    "Refund",
    "StripeCustomer",
    "StripeEvent",
    "User",
    "WorkerHeartbeat",
]
