"""What every background job receives; free of the queue library so domains can depend on it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.config import Settings


@dataclass(frozen=True, slots=True)
class JobContext:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    worker_id: str
