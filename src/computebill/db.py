"""Database engine, session factory, declarative Base, and the unit of work.

The caller owns the transaction (docs/architecture.md §5.4): a request, through
`deps.SessionDep`, or a job, through `unit_of_work`, commits on success and rolls back on error.
Services only `flush()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import uuid4

import structlog
from sqlalchemy import ColumnElement, DateTime, FromClause, MetaData, Uuid, func, type_coerce
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from computebill.config import DatabasePooler, Settings
from computebill.errors import AppError
from computebill.jobs import JobPublisher, JobRequest, take_requested_jobs
from computebill.tracing import instrument_engine

log = structlog.get_logger(__name__)

# Stable constraint names, so Alembic autogenerate produces the same diff on every machine.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    """`created_at`/`updated_at` in UTC on tables whose rows change (docs/architecture.md §4)."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


_UUID_AS_TEXT = Uuid(as_uuid=False)


def shown_columns(table: FromClause, names: Iterable[str]) -> list[ColumnElement[Any]]:
    """The named columns of `table`, for a read that is only shown (a JSON answer, a page), with
    ids read as text: pydantic-core writes a str many times faster than asyncpg's UUID type
    (docs/architecture.md §3, reads on hot paths)."""
    columns: list[ColumnElement[Any]] = []
    for name in names:
        column = table.c[name]
        if isinstance(column.type, Uuid):
            columns.append(type_coerce(column, _UUID_AS_TEXT).label(name))
        else:
            columns.append(column)
    return columns


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """An engine on `url` (an asyncpg URL), by default the database's."""
    engine = create_async_engine(
        url or settings.async_database_url,
        # Every connection the pool opens is kept: an overflow connection, closed on return, made
        # PostgreSQL start a backend for nearly every request once a process was busy.
        pool_size=settings.database_pool_size,
        max_overflow=0,
        # No pre-ping: it costs three round trips (BEGIN, a ping, ROLLBACK) on every checkout.
        # A connection the server dropped fails its request with a 503 and invalidates the pool,
        # so the requests after it get new connections (docs/architecture.md §5.7).
        pool_timeout=10,
        connect_args=connect_arguments(settings.database_pooler),
    )
    instrument_engine(engine)
    return engine


def connect_arguments(pooler: DatabasePooler) -> dict[str, Any]:
    # Every connection works in UTC, whatever the server's default (PgBouncer passes both
    # startup settings on to each server connection it lends).
    arguments: dict[str, Any] = {
        "server_settings": {"timezone": "UTC", "application_name": "computebill"}
    }
    if pooler is DatabasePooler.PGBOUNCER_TRANSACTION:
        # Consecutive transactions of one connection may run on different server connections:
        # no statement is cached (neither SQLAlchemy's cache nor asyncpg's), and each is named
        # afresh, since a name asyncpg numbers may already be taken on the server connection.
        arguments |= {
            "prepared_statement_cache_size": 0,
            "statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    return arguments


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid4()}__"


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession], publisher: JobPublisher | None = None
) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits when the block succeeds and rolls back when it raises;
    jobs requested in it are sent after the commit, and dropped on rollback. An `AppError` with
    `keeps_writes` commits first, then propagates."""
    async with sessionmaker() as session:
        try:
            yield session
        except AppError as error:
            if not error.keeps_writes:
                take_requested_jobs(session)
                await session.rollback()
                raise
            await commit(session, publisher)
            raise
        except BaseException:
            take_requested_jobs(session)
            await session.rollback()
            raise
        await commit(session, publisher)


async def commit(session: AsyncSession, publisher: JobPublisher | None) -> None:
    """Commit the unit of work's transaction and send the jobs it requested. Also for a caller
    that owns two transactions in one unit (checkout commits its order before asking Stripe);
    the next one begins with the next statement."""
    await session.commit()
    await send_requested_jobs(session, publisher)


async def send_requested_jobs(session: AsyncSession, publisher: JobPublisher | None) -> None:
    requests = take_requested_jobs(session)
    if not requests:
        return
    if publisher is None:
        raise RuntimeError("jobs were requested in a unit of work that cannot send them")
    await send_jobs(requests, publisher)


async def send_jobs(requests: list[JobRequest], publisher: JobPublisher) -> None:
    """Send jobs of committed work; a failure is logged, and the sweeps send them later
    (docs/architecture.md §5.3)."""
    try:
        await publisher.publish(requests)
    except Exception as error:
        log.warning("jobs_not_enqueued", jobs=[r.name for r in requests], error=repr(error))
