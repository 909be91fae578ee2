"""The payments API's bodies: checkout, an order as its owner sees it (with its instances), an
admin's refund, and the console's orders and Stripe events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from computebill.instances.schemas import InstanceOut
from computebill.orders.schemas import (
    OrderLineOut,
    OrderSummaryOut,
    RefundOut,
    StatusChangeOut,
)
from computebill.payments.checkout import PayWith
from computebill.payments.models import EventStatus

# Text an operator types or a path names, without control characters: PostgreSQL text holds no
# NUL, and a NUL must be a 422, not a failed statement.
PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"


class CheckoutOut(BaseModel):
    order_id: uuid.UUID
    checkout_url: str


class ExtensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: StrictInt = Field(
        ge=1, description="Hours to add, within the pricing policy's min_hours..max_hours"
    )
    pay_with: PayWith = Field(
        description="`card`: a Stripe Checkout to pay; `credits`: from the balance, at once"
    )


class ExtensionOut(BaseModel):
    order_id: uuid.UUID
    instance_id: uuid.UUID
    hours: int
    price_cents: int
    currency: str
    pay_with: PayWith
    checkout_url: str | None = Field(description="`card`: where to pay; the hours are added then")
    expires_at: datetime | None = Field(
        description="`credits`: the instance's new stop time (null while it provisions: its "
        "paid time starts when it runs)"
    )
    paid_seconds: int | None = Field(description="`credits`: the instance's paid time now")


class ExtensionQuoteOut(BaseModel):
    instance_id: uuid.UUID
    hours: int
    price_cents: int = Field(description="What the hours cost now; buying them charges this")
    currency: str
    expires_at: datetime | None = Field(
        description="The instance's stop time once extended (null while it provisions: its "
        "paid time starts when it runs)"
    )
    paid_seconds: int = Field(description="The instance's paid time once extended")


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
    reason: str | None = Field(
        default=None, max_length=500, pattern=PLAIN_TEXT, description="Why, for the audit log"
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


class AdminOrderSummaryOut(OrderSummaryOut):
    """An order in the console's list: whose it is, and whether it waits for review."""

    user_id: uuid.UUID
    needs_review: bool


class AdminOrderPage(BaseModel):
    orders: list[AdminOrderSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


class EventSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    type: str
    status: EventStatus
    attempts: int
    outcome: str | None
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None


class EventPage(BaseModel):
    events: list[EventSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


class EventOut(EventSummaryOut):
    created: datetime = Field(description="When Stripe made the event")
    payload: dict[str, Any] = Field(description="The event as Stripe sent it")


class DisputeOut(BaseModel):
    """A dispute of the order's payment, as its Stripe event told it."""

    dispute_id: str
    amount_cents: int
    reason: str | None
    status: str | None
    event_id: str
    received_at: datetime


class AdminOrderOut(AdminOrderSummaryOut):
    review_reason: str | None
    checkout_session_id: str | None
    payment_intent_id: str | None
    charge_id: str | None
    refundable_cents: int = Field(description="What can still be refunded")
    lines: list[OrderLineOut]
    history: list[StatusChangeOut]
    refunds: list[RefundOut]
    disputes: list[DisputeOut]
    events: list[EventSummaryOut] = Field(description="Stripe events about it, oldest first")
