"""What the API shows of orders: their summaries, lines, history and refunds."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from computebill.catalog.description import LineDescription
from computebill.orders.models import Order, OrderStatus
from computebill.orders.service import OrderSummary


class OrderLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    gpu_slug: str
    gpu_name: str
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    region: str
    quantity: int
    gpu_hour_cents: int
    vcpu_hour_millicents: int
    storage_gb_hour_millicents: int
    unit_total_cents: int
    line_total_cents: int
    image_slug: str | None = Field(
        description="The machine image chosen for its instances; None: the default at the time"
    )
    extends_instance_id: uuid.UUID | None = Field(
        default=None, description="An extension: the instance these hours are bought for"
    )
    extends_instance_name: str | None = Field(
        default=None, description="An extension: that instance's name"
    )

    @property
    def description(self) -> LineDescription:
        return LineDescription.of(self, gpu_name=self.gpu_name, extends=self.extends_instance_name)


class StatusChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: OrderStatus | None
    to_status: OrderStatus
    reason: str
    changed_at: datetime


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    refund_id: str
    amount_cents: int
    status: str
    created_at: datetime


class OrderSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: OrderStatus
    currency: str
    total_cents: int
    refunded_cents: int
    created_at: datetime
    paid_at: datetime | None
    checkout_url: str | None
    checkout_expires_at: datetime | None


class OrderPage(BaseModel):
    orders: list[OrderSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


_SUMMARY = tuple(OrderSummaryOut.model_fields)


def summary_fields(order: Order | OrderSummary) -> dict[str, Any]:
    """An order as the order list shows it: `OrderSummaryOut`'s fields, in its order, from a
    loaded `Order` or an `OrderSummary`. The list serializes this as it is; an order's own
    answer adds to it."""
    return {name: getattr(order, name) for name in _SUMMARY}
