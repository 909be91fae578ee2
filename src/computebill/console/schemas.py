from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from computebill.instances.schemas import InstanceOut
from computebill.orders.schemas import OrderSummaryOut


class ReplayQueued(BaseModel):
    event_id: str
    status: Literal["pending"]


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    role: str
    email_verified: bool
    two_factor_enabled: bool
    created_at: datetime


class CustomerList(BaseModel):
    customers: list[CustomerOut]


class OperatorSessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_agent: str
    ip_address: str
    created_at: datetime
    last_used_at: datetime


class AuthEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    type: str
    session_id: uuid.UUID | None
    ip_address: str
    user_agent: str
    created_at: datetime


class CustomerDetailOut(BaseModel):
    customer: CustomerOut
    sessions: list[OperatorSessionOut] = Field(description="Live sessions, last used first")
    orders: list[OrderSummaryOut] = Field(description="The latest orders, newest first")
    instances: list[InstanceOut] = Field(description="Every instance, newest first")
    balance_millicents: int
    auth_events: list[AuthEventOut] = Field(description="The latest authentication events")
