"""The payments API's bodies: checkout, an order as its owner sees it (with its instances), and
an admin's refund."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, StrictInt

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
