"""The emulator's ASGI application: Stripe's API, the hosted checkout page, the emulator's own
pages, and two background loops (timers and webhook delivery) living as long as the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from stripe_emulator import api, checkout, checkout_page, dashboard, payments
from stripe_emulator.config import EmulatorConfig
from stripe_emulator.emulator import Emulator
from stripe_emulator.store import Store
from stripe_emulator.webhooks import WebhookDeliverer

logger = logging.getLogger(__name__)


async def run_timers(emulator: Emulator) -> None:
    """Expire sessions at `expires_at` and settle bank payments when their delay is over."""
    while True:
        try:
            checkout.expire_due_sessions(emulator)
            payments.settle_due_bank_payments(emulator)
        except Exception:
            logger.exception("timer round failed")
        await asyncio.sleep(emulator.config.tick_seconds)


def create_app(config: EmulatorConfig) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(config.database_path)
        emulator = Emulator(config, store)
        app.state.emulator = emulator
        async with httpx.AsyncClient() as http:
            deliverer = WebhookDeliverer(emulator, http)
            app.state.deliverer = deliverer
            tasks = [
                asyncio.create_task(run_timers(emulator)),
                asyncio.create_task(deliverer.run()),
            ]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                store.close()

    app = FastAPI(title="Stripe emulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(dashboard.router)
    app.include_router(checkout_page.router)
    app.include_router(api.router)
    return app
