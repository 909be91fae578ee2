"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from computebill.audit.models import AuditEntry
from computebill.auth.models import (
    AuthEvent,
    AuthSession,
    LoginChallenge,
    RecoveryCode,
    RefreshToken,
    User,
)
from computebill.cart.models import CartItem
from computebill.catalog.models import GpuModel, PricingPolicy
from computebill.credits.models import CreditAccount, CreditEntry, CreditGrant, CreditTopUp
from computebill.db import Base
from computebill.instances.models import (
    Instance,
    InstanceSshKey,
    InstanceStatusChange,
    SimulatedMachine,
)
from computebill.invoices.models import (
    BillingProfile,
    Invoice,
    InvoiceLine,
    InvoiceNumberCounter,
    Statement,
    StatementLine,
)
from computebill.mail.models import OutboxEmail, OutboxEmailAttachment
from computebill.notifications.models import RunwayAlert
from computebill.ops.models import WorkerHeartbeat
from computebill.orders.models import Order, OrderLine, OrderStatusChange, Refund
from computebill.payments.models import StripeCustomer, StripeEvent
from computebill.sshkeys.models import SshKey

__all__ = [
    "AuditEntry",
    "AuthEvent",
    "AuthSession",
    "Base",
    "BillingProfile",
    "CartItem",
    "CreditAccount",
    "CreditEntry",
    "CreditGrant",
    "CreditTopUp",
    "GpuModel",
    "Instance",
    "InstanceSshKey",
    "InstanceStatusChange",
    "Invoice",
    "InvoiceLine",
    "InvoiceNumberCounter",
    "LoginChallenge",
    "Order",
    "OrderLine",
    "OrderStatusChange",
    "OutboxEmail",
    "OutboxEmailAttachment",
    "PricingPolicy",
    "RecoveryCode",
    "RefreshToken",
    "Refund",
    "RunwayAlert",
    "SimulatedMachine",
    "SshKey",
    "Statement",
    "StatementLine",
    "StripeCustomer",
    "StripeEvent",
    "User",
    "WorkerHeartbeat",
]
