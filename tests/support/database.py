"""The test database: sessions on it, a database of a test's own beside it, and a session whose
every write is rolled back, for fast service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.config import Settings
from computebill.devserver.scratch import (
    create_database,
    delete_namespace,
    drop_database,
)
from computebill.migrations import upgrade_to_head_async
from computebill.seed import seed_database


@asynccontextmanager
async def own_database(settings: Settings, server_url: str) -> AsyncIterator[Settings]:
    """`settings` with a fresh migrated and seeded database and a Redis namespace of their own
    (so no other worker, or sweep, ever sees their events and jobs)."""
    database_url = await create_database(server_url, "computebill_own")
    namespace = "test-" + str(make_url(database_url).database).rsplit("_", 1)[-1]
    own = settings.model_copy(update={"database_url": database_url, "redis_namespace": namespace})
    try:
        await upgrade_to_head_async(own)
        await seed_database(own)
        yield own
    finally:
        await drop_database(database_url)
        await delete_namespace(str(settings.redis_url), namespace)


@asynccontextmanager
async def rolled_back_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back when the block ends, whatever the
    block did: its `commit()` only releases a savepoint, so nothing it writes outlives it."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )
        try:
            yield session
        finally:
            await session.close()
            await transaction.rollback()
