"""Every request dependency on process-wide state, as `Annotated` aliases: routes and pages
declare what they need (`SessionDep`, `GatewayDep`, …) and never read `request.app.state`.

Every dependency is `async def`, even where it awaits nothing: FastAPI runs a plain `def`
dependency in its thread pool, a thread hop per dependency per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from computebill.auth.service import AuthComponents
from computebill.catalog.service import Catalog, CatalogCache
from computebill.clock import Clock
from computebill.config import DatabasePooler, Settings
from computebill.db import unit_of_work
from computebill.payments.gateway import StripeGateway
from computebill.payments.inbox import EventInbox
from computebill.queue.publisher import AppQueuePublisher
from computebill.state import AppState, CartCounter, HeaderMoneyReader, app_state


async def _state(request: Request) -> AppState:
    return app_state(request.app)


StateDep = Annotated[AppState, Depends(_state)]


async def _request_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(state.sessionmaker, state.publisher) as session:
        yield session


# scope="function": commit before the response is sent, so a failed commit is never answered 2xx.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


async def _read_connection(db: SessionDep, state: StateDep) -> AsyncConnection:
    # A route that only reads needs no transaction of its own: in autocommit its statement goes
    # alone, without a BEGIN and a COMMIT round trip. If the request's transaction has already
    # begun (the revocation check reads the database when Redis cannot answer), it reads in it.
    # Behind PgBouncer in transaction mode a statement outside a transaction may be prepared on
    # one server connection and run on another: there, reads take a transaction.
    pooled = state.settings.database_pooler is DatabasePooler.PGBOUNCER_TRANSACTION
    if pooled or db.in_transaction():
        return await db.connection()
    return await db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


# For routes that only read, nothing else: the connection of the request's session, so a request
# holds one connection whichever dependency uses it first (docs/architecture.md §5.4).
ReadConnectionDep = Annotated[AsyncConnection, Depends(_read_connection)]


async def _report_connection(db: SessionDep, state: StateDep) -> AsyncIterator[AsyncConnection]:
    if state.read_engine is state.engine:
        yield await _read_connection(db, state)
        return
    async with state.read_engine.connect() as connection:
        yield connection


# For the operators' lists and reports: the read replica's connection when DATABASE_READ_URL is
# set. A replica lags, so never for the money path, nor for what a customer reads back after
# writing it (docs/architecture.md §5.4).
ReportConnectionDep = Annotated[AsyncConnection, Depends(_report_connection, scope="function")]


async def _settings(state: StateDep) -> Settings:
    return state.settings


async def _clock(state: StateDep) -> Clock:
    return state.clock


async def _engine(state: StateDep) -> AsyncEngine:
    return state.engine


async def _redis(state: StateDep) -> aioredis.Redis:
    return state.redis


async def _publisher(state: StateDep) -> AppQueuePublisher:
    return state.publisher


async def _gateway(state: StateDep) -> StripeGateway:
    return state.gateway


async def _inbox(state: StateDep) -> EventInbox:
    return state.inbox


async def _auth(state: StateDep) -> AuthComponents:
    return state.auth


async def _cart_counter(state: StateDep) -> CartCounter:
    return state.cart_counter


async def _header_money(state: StateDep) -> HeaderMoneyReader:
    return state.header_money


async def _catalog(state: StateDep) -> Catalog:
    return await state.catalog_cache.get(state.sessionmaker)


async def _catalog_cache(state: StateDep) -> CatalogCache:
    return state.catalog_cache


SettingsDep = Annotated[Settings, Depends(_settings)]
ClockDep = Annotated[Clock, Depends(_clock)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
RedisDep = Annotated[aioredis.Redis, Depends(_redis)]
PublisherDep = Annotated[AppQueuePublisher, Depends(_publisher)]
GatewayDep = Annotated[StripeGateway, Depends(_gateway)]
InboxDep = Annotated[EventInbox, Depends(_inbox)]
AuthDep = Annotated[AuthComponents, Depends(_auth)]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
CatalogCacheDep = Annotated[CatalogCache, Depends(_catalog_cache)]
CartCounterDep = Annotated[CartCounter, Depends(_cart_counter)]
HeaderMoneyDep = Annotated[HeaderMoneyReader, Depends(_header_money)]

# A client's key for a request that creates something: the same key answers what the first
# request made (visible ASCII, as Stripe's keys are).
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255, pattern=r"^[\x21-\x7e]+$"),
]
