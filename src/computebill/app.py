"""The ASGI application: pages, the JSON API, webhooks and operational endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from computebill import __version__
from computebill.audit.api import router as audit_router
from computebill.auth.api import router as auth_router
from computebill.auth.api import well_known_router
from computebill.auth.dependencies import json_routes, required_scope
from computebill.auth.intents import LoginIntents
from computebill.auth.pages import router as auth_pages
from computebill.auth.revocations import RevocationList
from computebill.auth.service import AuthComponents
from computebill.auth.tokens import (
    LEEWAY_SECONDS,
    AccessTokenCodec,
    KnownDevices,
    RefreshTokenCrypto,
    SecretBox,
)
from computebill.billing.api import router as billing_router
from computebill.billing.pages import router as billing_pages
from computebill.billing.service import header_figures
from computebill.cart.api import router as cart_router
from computebill.cart.pages import router as cart_pages
from computebill.cart.service import item_count
from computebill.catalog.api import admin_router as catalog_admin_router
from computebill.catalog.api import router as catalog_router
from computebill.catalog.pages import router as catalog_pages
from computebill.catalog.service import CatalogCache
from computebill.clock import SystemClock
from computebill.config import Settings, get_settings
from computebill.console.api import router as console_router
from computebill.console.pages import router as console_pages
from computebill.credits.api import admin_router as credits_admin_router
from computebill.credits.api import router as credits_router
from computebill.db import create_engine, create_sessionmaker
from computebill.errors import install_error_handlers
from computebill.heap import freeze_startup_objects
from computebill.http_guards import RequestGuardMiddleware
from computebill.instances.api import admin_router as instances_admin_router
from computebill.instances.api import router as instances_router
from computebill.instances.pages import router as instances_pages
from computebill.invoices.api import router as invoices_router
from computebill.invoices.pages import router as invoices_pages
from computebill.logging import configure_logging
from computebill.mail.pages import router as dev_mail_pages
from computebill.metrics import MetricsMiddleware
from computebill.notifications.api import router as outbox_router
from computebill.ops.api import router as ops_router
from computebill.ops.pages import router as ops_pages
from computebill.payments.api import router as payments_router
from computebill.payments.api import webhook_router
from computebill.payments.gateway import StripeGateway
from computebill.payments.inbox import EventInbox
from computebill.payments.pages import router as payments_pages
from computebill.queue.publisher import AppQueuePublisher
from computebill.ratelimit import RateLimiter
from computebill.request_context import RequestContextMiddleware
from computebill.security_headers import SecurityHeadersMiddleware
from computebill.sshkeys.api import router as sshkeys_router
from computebill.sshkeys.pages import router as sshkeys_pages
from computebill.state import AppState
from computebill.tracing import APP_SERVICE, instrument_app, start_tracing
from computebill.web import STATIC_DIR
from computebill.web.cookies import SessionCookieMiddleware
from computebill.web.login import LoginRequired, send_to_login


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_services_configured()
    settings.check_keys_configured()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        read_url = settings.async_database_read_url
        read_engine = engine if read_url is None else create_engine(settings, read_url)
        redis = aioredis.Redis.from_url(
            settings.required_redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        publisher = AppQueuePublisher(settings)
        clock = SystemClock()
        inbox = EventInbox(engine, publisher, clock)
        app.state.platform = AppState(
            settings=settings,
            clock=clock,
            engine=engine,
            read_engine=read_engine,
            sessionmaker=create_sessionmaker(engine),
            redis=redis,
            publisher=publisher,
            catalog_cache=CatalogCache(redis, namespace=settings.redis_namespace),
            gateway=StripeGateway(settings),
            inbox=inbox,
            auth=AuthComponents(
                access_tokens=AccessTokenCodec(settings),
                refresh_tokens=RefreshTokenCrypto(settings.required_token_pepper),
                revocations=RevocationList(
                    redis,
                    namespace=settings.redis_namespace,
                    # Outlives every access token of the session, leeway included.
                    ttl_seconds=settings.access_token_ttl_seconds + LEEWAY_SECONDS + 60,
                ),
                rate_limiter=RateLimiter(
                    settings.required_redis_url, namespace=settings.redis_namespace
                ),
                secrets=SecretBox(settings.required_token_pepper),
                devices=KnownDevices(settings.required_token_pepper),
                intents=LoginIntents(
                    settings.required_token_pepper, redis, namespace=settings.redis_namespace
                ),
            ),
            cart_counter=item_count,
            header_money=lambda db, user_id, now: header_figures(db, user_id, now=now),
        )
        try:
            yield
        finally:
            await inbox.close()  # every webhook still waiting is answered, its jobs sent
            await publisher.close()
            await redis.aclose()
            await engine.dispose()
            await read_engine.dispose()

    app = FastAPI(
        title="Compute Billing Platform",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs" if settings.api_docs_enabled else None,
        redoc_url=None,
        openapi_url="/api/openapi.json" if settings.api_docs_enabled else None,
    )
    install_error_handlers(app)
    app.add_exception_handler(LoginRequired, send_to_login)
    app.add_middleware(RequestGuardMiddleware, max_body_bytes=settings.max_request_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(SessionCookieMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(
        SecurityHeadersMiddleware,
        settings=settings,
        docs_paths=frozenset({"/api/docs", "/api/docs/oauth2-redirect"}),
    )
    if settings.forwarded_allow_ips.strip():
        # Outermost, so every limit, log line and audit row sees the client the proxy names.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    app.include_router(ops_router)
    app.include_router(auth_router)
    app.include_router(well_known_router)
    app.include_router(catalog_router)
    app.include_router(cart_router)
    app.include_router(payments_router)
    app.include_router(webhook_router)
    app.include_router(outbox_router)
    app.include_router(instances_router)
    app.include_router(sshkeys_router)
    app.include_router(billing_router)
    app.include_router(credits_router)
    app.include_router(invoices_router)
    app.include_router(credits_admin_router)
    app.include_router(audit_router)
    app.include_router(catalog_admin_router)
    app.include_router(console_router)
    app.include_router(instances_admin_router)
    app.include_router(catalog_pages)
    app.include_router(auth_pages)
    app.include_router(cart_pages)
    app.include_router(payments_pages)
    app.include_router(instances_pages)
    app.include_router(sshkeys_pages)
    app.include_router(billing_pages)
    app.include_router(invoices_pages)
    app.include_router(ops_pages)
    app.include_router(console_pages)
    if settings.dev_mail_dir is not None:
        # Development only: `computebill up` sets it for its SMTP catcher (§2).
        app.include_router(dev_mail_pages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _document_scopes(app)
    instrument_app(app)  # nothing while tracing is off
    return app


def _document_scopes(app: FastAPI) -> None:
    """Every operation's `x-required-scope` (docs/architecture.md §8), read from the caller
    dependency its route declares, so the schema cannot disagree with what is enforced."""
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build_schema()
        for route in json_routes(app):
            if route.include_in_schema:
                operations = schema["paths"][route.path_format]
                for method in route.methods or ():
                    operations[method.lower()]["x-required-scope"] = required_scope(route)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_environment() -> FastAPI:
    """Uvicorn's factory for `computebill app` (run once in each server process): settings,
    logging and tracing from the environment, and the start-up heap frozen."""
    settings = get_settings()
    configure_logging(settings)
    start_tracing(settings, APP_SERVICE)
    app = create_app(settings)
    freeze_startup_objects()
    return app
