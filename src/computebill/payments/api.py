"""The Stripe webhook: verify, store, acknowledge. Processing happens in a job."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from computebill.deps import ClockDep, GatewayDep, SessionDep
from computebill.errors import problem_response
from computebill.payments import service
from computebill.payments.gateway import InvalidWebhook, PaymentsNotConfigured

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/stripe",
    summary="Stripe events (signed); 200 once stored, 400 when the signature does not verify",
)
async def stripe_webhook(
    request: Request, db: SessionDep, clock: ClockDep, gateway: GatewayDep
) -> JSONResponse:
    payload = await request.body()  # the raw bytes: the signature covers them exactly
    try:
        event = gateway.verify_webhook(payload, request.headers.get("stripe-signature", ""))
    except PaymentsNotConfigured:
        return problem_response(
            status=503, code="webhooks_unavailable", detail="No webhook secret is configured."
        )
    except InvalidWebhook as error:
        return problem_response(status=400, code="invalid_signature", detail=str(error))
    # Committed (and its job sent) by the unit of work before this answer leaves.
    inserted = await service.store_event(db, event, now=clock.now())
    return JSONResponse({"received": True, "duplicate": not inserted})
