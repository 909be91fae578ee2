"""The payments API's bodies: checkout, an order as its owner sees it (with its instances), and
an admin's refund."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from computebill.instances.schemas import InstanceOut
from computebill.orders.schemas import (
    OrderLineOut,
    OrderSummaryOut,
    RefundOut,
    StatusChangeOut,
)


class CheckoutOut(BaseModel):
    order_id: uuid.UUID
    checkout_url: str


class TopUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_cents: StrictInt = Field(
        description="Credit to buy, in cents, between TOP_UP_MIN_CENTS and TOP_UP_MAX_CENTS"
    )
    save_card: StrictBool = Field(
        default=False, description="Keep the card for auto-recharge once the top-up is paid"
    )


class TopUpCheckoutOut(BaseModel):
    top_up_id: uuid.UUID
    checkout_url: str = Field(description="Stripe's page where the top-up is paid")


class OrderOut(OrderSummaryOut):
    checkout_session_id: str | None
    payment_intent_id: str | None
    needs_review: bool
    lines: list[OrderLineOut]
    history: list[StatusChangeOut]
    refunds: list[RefundOut]
    instances: list[InstanceOut]


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_cents: int | None = Field(
        default=None, ge=1, description="Omit to refund everything not yet refunded"
    )


class RefundRequestedOut(BaseModel):
    refund_id: str
    amount_cents: int


class CardSetupOut(BaseModel):
    checkout_url: str = Field(description="Stripe's page where the card is saved")


class PaymentMethodOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    stripe_payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    created_at: datetime


class PaymentMethodsOut(BaseModel):
    payment_methods: list[PaymentMethodOut]


class AutoRechargeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool
    threshold_cents: StrictInt = Field(
        ge=0, le=100_000_000, description="Recharge when the live balance falls below this"
    )
    amount_cents: StrictInt = Field(
        description="What each recharge buys, between TOP_UP_MIN_CENTS and TOP_UP_MAX_CENTS"
    )
    monthly_max_cents: StrictInt | None = Field(
        default=None, ge=1, description="At most this much charged per UTC month; none: no limit"
    )


class AutoRechargeAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    crossing: int
    attempt: int
    top_up_id: uuid.UUID
    amount_cents: int
    payment_intent_id: str | None
    status: str
    failure_code: str | None
    decline_code: str | None
    failure_message: str | None
    created_at: datetime
    finished_at: datetime | None


class AutoRechargeOut(BaseModel):
    enabled: bool
    threshold_cents: int | None
    amount_cents: int | None
    monthly_max_cents: int | None
    armed: bool
    consecutive_failures: int
    paused_reason: str | None
    next_attempt_at: datetime | None
    attempts: list[AutoRechargeAttemptOut]
