"""The emulator's own pages: health for whoever starts it, the delivery log, customers with
their saved cards and intents, and triggers."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from stripe_emulator import triggers
from stripe_emulator.checkout_page import templates
from stripe_emulator.config import WEBHOOK_TIMINGS
from stripe_emulator.emulator import Emulator
from stripe_emulator.errors import StripeError, invalid_param
from stripe_emulator.store import JSON

router = APIRouter(prefix="/_emulator", include_in_schema=False)
LOG_LENGTH = 100
CUSTOMERS_SHOWN = 50


def _emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


def delivery_log(emulator: Emulator, limit: int) -> list[JSON]:
    """The newest events with each delivery and its attempts."""
    events = emulator.store.page("event", limit=limit).data
    if not events:
        return []
    deliveries = emulator.store.deliveries_for([event["id"] for event in events])
    attempts = emulator.store.attempts_for([delivery.id for delivery in deliveries])
    log = []
    for event in events:
        event_deliveries = []
        for delivery in deliveries:
            if delivery.event_id != event["id"]:
                continue
            event_deliveries.append(
                {
                    "url": delivery.url,
                    "status": delivery.status,
                    "next_attempt_at": delivery.next_attempt_at,
                    "attempts": [
                        {k: v for k, v in asdict(attempt).items() if k != "delivery_id"}
                        for attempt in attempts
                        if attempt.delivery_id == delivery.id
                    ],
                }
            )
        log.append(
            {
                "id": event["id"],
                "type": event["type"],
                "created": event["created"],
                "object_id": event["data"]["object"].get("id"),
                "deliveries": event_deliveries,
            }
        )
    return log


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/deliveries")
async def deliveries(request: Request, limit: int = LOG_LENGTH) -> list[JSON]:
    return delivery_log(_emulator(request), min(max(limit, 1), 1000))


@router.get("", response_class=HTMLResponse)
async def log_page(request: Request) -> HTMLResponse:
    emulator = _emulator(request)

    def when(timestamp: float) -> str:
        moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")

    context: dict[str, Any] = {
        "log": delivery_log(emulator, LOG_LENGTH),
        "config": emulator.config,
        "webhook_secret": emulator.webhook_secret,
        "webhook_timing": emulator.webhook_timing,
        "when": when,
    }
    return templates.TemplateResponse(request, "log.html", context)


def customer_overview(emulator: Emulator, limit: int) -> list[JSON]:
    """The newest customers, each with its cards, SetupIntents and PaymentIntents (newest first)."""
    overview = []
    for customer in emulator.store.page("customer", limit=limit).data:
        related = {"customer": customer["id"]}
        overview.append(
            {
                "customer": customer,
                "payment_methods": emulator.store.page(
                    "payment_method", limit=100, equals=related
                ).data,
                "setup_intents": emulator.store.page(
                    "setup_intent", limit=100, equals=related
                ).data,
                "payment_intents": emulator.store.page(
                    "payment_intent", limit=100, equals=related
                ).data,
            }
        )
    return overview


@router.get("/customers", response_class=HTMLResponse)
async def customers_page(request: Request) -> HTMLResponse:
    context = {"overview": customer_overview(_emulator(request), CUSTOMERS_SHOWN)}
    return templates.TemplateResponse(request, "customers.html", context)


@router.get("/webhook-timing")
async def webhook_timing(request: Request) -> dict[str, str]:
    return {"timing": _emulator(request).webhook_timing}


@router.post("/webhook-timing")
async def set_webhook_timing(request: Request) -> JSONResponse:
    """Body `{"timing": "before_response"}`: from now on, for every API request without the
    Stripe-Emulator-Webhook-Timing header (until changed again or the emulator restarts)."""
    timing = str((await request.json()).get("timing", ""))
    if timing not in WEBHOOK_TIMINGS:
        error = invalid_param("timing", f"Use one of: {', '.join(sorted(WEBHOOK_TIMINGS))}.")
        return JSONResponse(error.body(), status_code=error.status)
    _emulator(request).webhook_timing = timing
    return JSONResponse({"timing": timing})


@router.post("/trigger")
async def trigger(request: Request) -> JSONResponse:
    """Body: `{"event": "checkout.session.completed", "for": "cs_test_…"}` (`for` optional)."""
    body = await request.json()
    emulator = _emulator(request)
    try:
        session_id, emitted = triggers.trigger(
            emulator,
            str(body.get("event", "")),
            body.get("for") or None,
            emulator.public_base_url(str(request.base_url)),
        )
    except StripeError as error:
        return JSONResponse(error.body(), status_code=error.status)
    return JSONResponse({"session": session_id, "events": emitted})
