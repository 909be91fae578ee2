"""What one app process builds at startup and every request shares, typed in one place."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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


@dataclass(slots=True)
class AppState:
    """Built by the app's lifespan. Mutable only so that tests can swap in a frozen clock."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    publisher: AppQueuePublisher
    catalog_cache: CatalogCache
    gateway: StripeGateway
    inbox: EventInbox
    auth: AuthComponents
    cart_counter: CartCounter


def app_state(app: Starlette) -> AppState:
    state: AppState = app.state.platform
    return state
