"""Alembic migrations, and the configuration `computebill migrate` and the tests run them with."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config

from computebill.config import Settings


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", "computebill:migrations")
    config.attributes["settings"] = settings
    return config


def upgrade_to_head(settings: Settings) -> None:
    command.upgrade(alembic_config(settings), "head")


async def upgrade_to_head_async(settings: Settings) -> None:
    # env.py runs its own event loop, so from async code it runs in a thread.
    await asyncio.to_thread(upgrade_to_head, settings)
