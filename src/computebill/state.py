"""What one app process builds at startup and every request shares, typed in one place."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from computebill.auth.service import AuthComponents
from computebill.catalog.service import CatalogCache
from computebill.clock import Clock
from computebill.config import Settings
from computebill.payments.gateway import StripeGateway
from computebill.payments.inbox import EventInbox
from computebill.queue.publisher import AppQueuePublisher

# The number of items in a user's cart, for the page header. The app registers the cart's own
# count at startup, so the visitor (auth) and the layout (web) need not import the cart.
CartCounter = Callable[[AsyncSession, uuid.UUID], Awaitable[int]]


class HeaderMoney(Protocol):
    """What the page header shows of a customer's money."""

    @property
    def balance_cents(self) -> int: ...  # the live balance, rounded down

    @property
    def credit_stopped(self) -> bool: ...  # the credit cap stopped instances (the banner)


# The header's balance and banner, read once per page view. The app registers billing's reader
# at startup, as it does the cart count: billing sits above auth and web.
HeaderMoneyReader = Callable[[AsyncSession, uuid.UUID, datetime], Awaitable[HeaderMoney]]


@dataclass(slots=True)
class AppState:
    """Built by the app's lifespan. Mutable only so that tests can swap in a frozen clock."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    # The read replica's (DATABASE_READ_URL), for the operators' lists and reports only;
    # without a replica, `engine` itself.
    read_engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    publisher: AppQueuePublisher
    catalog_cache: CatalogCache
    gateway: StripeGateway
    inbox: EventInbox
    auth: AuthComponents
    cart_counter: CartCounter
    header_money: HeaderMoneyReader


def app_state(app: Starlette) -> AppState:
    state: AppState = app.state.platform
    return state
