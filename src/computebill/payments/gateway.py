"""Stripe, reached only from here: one client configured from settings (docs/architecture.md §3)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
import stripe

from computebill.config import Settings
from computebill.errors import AppError

# How long a client should wait before trying again when Stripe is away or payments are off.
RETRY_AFTER_SECONDS = 5


class PaymentsNotConfigured(AppError):
    """No Stripe key is configured: payments are off until one is."""

    status = 503
    code = "payments_unavailable"

    def __init__(self, detail: str = "Payments are not available right now.") -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class WebhooksNotConfigured(PaymentsNotConfigured):
    """No webhook secret is configured, so no event can be verified."""

    code = "webhooks_unavailable"

    def __init__(self) -> None:
        super().__init__("No webhook secret is configured.")


class PaymentProviderUnavailable(AppError):
    """Stripe could not be reached or answered with an error of its own; safe to retry.

    The client is told only that; `reason` (Stripe's own message) is for the logs and notes."""

    status = 502
    code = "payment_provider_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(
            "The payment provider could not be reached, so nothing was charged. "
            "Please try again in a moment.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class InvalidWebhook(AppError):
    """The payload is not a Stripe event signed with one of our secrets."""

    status = 400
    code = "invalid_signature"


@dataclass(frozen=True, slots=True)
class CheckoutLine:
    name: str
    description: str
    unit_amount_cents: int
    quantity: int


@dataclass(frozen=True, slots=True)
class CheckoutFor:
    """What a Checkout Session pays: the session's metadata names it (so its events find it),
    and the Stripe idempotency key comes from it (docs/architecture.md §5.6)."""

    metadata_key: str  # "order_id" or "top_up_id"
    id: str
    idempotency_key: str

    @classmethod
    def order(cls, order_id: str) -> CheckoutFor:
        return cls("order_id", order_id, f"checkout-{order_id}")

    @classmethod
    def top_up(cls, top_up_id: str) -> CheckoutFor:
        return cls("top_up_id", top_up_id, f"top-up-checkout-{top_up_id}")


@dataclass(frozen=True, slots=True)
class OpenedCheckout:
    session_id: str
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SavedCard:
    """A card attached to a Customer at Stripe, as it is shown to its owner."""

    payment_method_id: str
    customer_id: str | None  # None: not attached to any Customer
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class ChargeOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # declined, or refused: nothing was charged
    REQUIRES_ACTION = "requires_action"  # the bank wants the customer present (3-D Secure)
    PROCESSING = "processing"  # not settled yet: its webhook says how it ends


@dataclass(frozen=True, slots=True)
class OffSessionCharge:
    """How an off-session PaymentIntent ended: a card's refusal is an outcome, not an error."""

    outcome: ChargeOutcome
    payment_intent_id: str | None  # None when Stripe refused before making one
    amount_cents: int | None = None
    currency: str | None = None
    failure_code: str | None = None  # `card_declined`, `authentication_required`, …
    decline_code: str | None = None  # the bank's reason: `insufficient_funds`, …
    failure_message: str | None = None


def _card_of(method: Any) -> SavedCard:
    card = method["card"]
    customer = method.get("customer")
    return SavedCard(
        payment_method_id=str(method["id"]),
        customer_id=(str(customer["id"]) if isinstance(customer, dict) else customer) or None,
        brand=str(card.get("brand") or "card"),
        last4=str(card.get("last4") or ""),
        exp_month=int(card.get("exp_month") or 0),
        exp_year=int(card.get("exp_year") or 0),
    )


def charge_of_intent(intent: dict[str, Any]) -> OffSessionCharge:
    """What a PaymentIntent (as the API answers it, or in an event) says about its charge."""
    status = intent.get("status")
    error = intent.get("last_payment_error") or {}
    outcome = {
        "succeeded": ChargeOutcome.SUCCEEDED,
        "requires_action": ChargeOutcome.REQUIRES_ACTION,
        "processing": ChargeOutcome.PROCESSING,
    }.get(str(status), ChargeOutcome.FAILED)
    return OffSessionCharge(
        outcome=outcome,
        payment_intent_id=str(intent["id"]),
        amount_cents=intent.get("amount"),
        currency=intent.get("currency"),
        failure_code=error.get("code")
        or ("authentication_required" if outcome is ChargeOutcome.REQUIRES_ACTION else None),
        decline_code=error.get("decline_code"),
        failure_message=error.get("message"),
    )


# Failures that retrying may fix; anything else (a bad request of ours) is a bug to surface.
_TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


class StripeGateway:
    def __init__(self, settings: Settings) -> None:
        key = settings.stripe_secret_key
        base = settings.stripe_api_base
        self._client = (
            stripe.StripeClient(
                key.get_secret_value(),
                base_addresses={"api": str(base).rstrip("/")} if base else None,
                # Retries reuse the idempotency key, so a retried POST never acts twice.
                max_network_retries=2,
            )
            if key is not None
            else None
        )
        secrets = settings.stripe_webhook_secret
        self._webhook_secrets = (
            [s.strip() for s in secrets.get_secret_value().split(",") if s.strip()]
            if secrets is not None
            else []
        )

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            raise PaymentsNotConfigured()
        return self._client

    async def create_customer(self, *, user_id: str, email: str) -> str:
        try:
            customer = await self.client.v1.customers.create_async(
                params={"email": email, "metadata": {"user_id": user_id}},
                options={"idempotency_key": f"customer-{user_id}"},
            )
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        return str(customer.id)

    async def open_checkout(
        self,
        *,
        paying: CheckoutFor,
        customer_id: str,
        currency: str,
        lines: list[CheckoutLine],
        success_url: str,
        cancel_url: str,
        expires_at: datetime,
        save_card: bool = False,
    ) -> OpenedCheckout:
        """A Checkout Session in payment mode; `save_card` asks Stripe to keep the card for
        off-session charges (auto-recharge)."""
        intent_data: dict[str, Any] = {"metadata": {paying.metadata_key: paying.id}}
        if save_card:
            intent_data["setup_future_usage"] = "off_session"
        params: dict[str, Any] = {
            "mode": "payment",
            "customer": customer_id,
            "client_reference_id": paying.id,
            "metadata": {paying.metadata_key: paying.id},
            "payment_intent_data": intent_data,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(expires_at.timestamp()),
            "line_items": [
                {
                    "quantity": line.quantity,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": line.unit_amount_cents,
                        "product_data": {"name": line.name, "description": line.description},
                    },
                }
                for line in lines
            ],
        }
        return await self._create_checkout(params, idempotency_key=paying.idempotency_key)

    async def _create_checkout(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> OpenedCheckout:
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        return OpenedCheckout(
            session_id=str(session.id),
            url=str(session.url),
            expires_at=datetime.fromtimestamp(int(session.expires_at), tz=UTC),
        )

    async def retrieve_checkout(self, session_id: str) -> dict[str, Any]:
        """The session as Stripe has it now, with its PaymentIntent and the PaymentIntent's
        latest charge expanded (the card an invoice names)."""
        try:
            session = await self.client.v1.checkout.sessions.retrieve_async(
                session_id, params={"expand": ["payment_intent", "payment_intent.latest_charge"]}
            )
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        return session.to_dict()

    async def checkout_of_payment(self, payment_intent_id: str) -> str | None:
        """The id of the Checkout Session that made this PaymentIntent, if one did."""
        try:
            sessions = await self.client.v1.checkout.sessions.list_async(
                params={"payment_intent": payment_intent_id, "limit": 1}
            )
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        return str(sessions.data[0].id) if sessions.data else None

    async def refund(self, *, payment_intent_id: str, amount_cents: int, key: str) -> str:
        try:
            refund = await self.client.v1.refunds.create_async(
                params={"payment_intent": payment_intent_id, "amount": amount_cents},
                options={"idempotency_key": key},
            )
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        return str(refund.id)

    async def open_setup_checkout(
        self,
        *,
        customer_id: str,
        user_id: str,
        currency: str,
        success_url: str,
        cancel_url: str,
        expires_at: datetime,
        idempotency_key: str,
    ) -> OpenedCheckout:
        """A Checkout Session in setup mode: the customer saves a card, nothing is charged."""
        params: dict[str, Any] = {
            "mode": "setup",
            "customer": customer_id,
            "currency": currency,
            "metadata": {"user_id": user_id},
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(expires_at.timestamp()),
        }
        return await self._create_checkout(params, idempotency_key=idempotency_key)

    async def payment_method_of_setup(self, setup_intent_id: str) -> str | None:
        """The card a SetupIntent saved, if it saved one."""
        try:
            intent = await self.client.v1.setup_intents.retrieve_async(setup_intent_id)
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        method = intent.to_dict().get("payment_method")
        if isinstance(method, dict):
            return str(method["id"])
        return str(method) if method else None

    async def retrieve_card(self, payment_method_id: str) -> SavedCard:
        try:
            method = await self.client.v1.payment_methods.retrieve_async(payment_method_id)
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        return _card_of(method.to_dict())

    async def make_default_card(self, *, customer_id: str, payment_method_id: str) -> None:
        """The card becomes the Customer's `invoice_settings.default_payment_method`."""
        try:
            await self.client.v1.customers.update_async(
                customer_id,
                params={"invoice_settings": {"default_payment_method": payment_method_id}},
            )
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error

    async def detach_card(self, payment_method_id: str) -> None:
        """Detach the card from its Customer; one already detached is not an error."""
        try:
            await self.client.v1.payment_methods.detach_async(payment_method_id)
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        except stripe.InvalidRequestError as error:
            if "not attached" not in str(error):
                raise

    async def charge_off_session(
        self,
        *,
        amount_cents: int,
        currency: str,
        customer_id: str,
        payment_method_id: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> OffSessionCharge:
        """Charge a saved card with the customer away. The same key answers the same
        PaymentIntent, however often it is sent. A refused card (402) is an outcome;
        PaymentProviderUnavailable means Stripe may or may not have charged (ask again with the
        same key)."""
        try:
            intent = await self.client.v1.payment_intents.create_async(
                params={
                    "amount": amount_cents,
                    "currency": currency,
                    "customer": customer_id,
                    "payment_method": payment_method_id,
                    "confirm": True,
                    "off_session": True,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as error:
            json_body: dict[str, Any] = error.json_body if isinstance(error.json_body, dict) else {}
            body: dict[str, Any] = json_body.get("error") or {}
            intent_of_error = body.get("payment_intent") or {}
            return OffSessionCharge(
                outcome=ChargeOutcome.FAILED,
                payment_intent_id=intent_of_error.get("id"),
                amount_cents=intent_of_error.get("amount"),
                currency=intent_of_error.get("currency"),
                failure_code=body.get("code") or error.code,
                decline_code=body.get("decline_code"),
                failure_message=(body.get("message") or str(error))[:500],
            )
        except _TRANSIENT as error:
            raise PaymentProviderUnavailable(str(error)) from error
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as error:
            # Refused before anything was charged (the card detached, the key reused with
            # other parameters): an outcome to record, not one to retry as it is.
            return OffSessionCharge(
                outcome=ChargeOutcome.FAILED,
                payment_intent_id=None,
                failure_code=error.code or "invalid_request",
                failure_message=str(error.user_message or error)[:500],
            )
        return charge_of_intent(intent.to_dict())

    def verify_webhook(self, payload: bytes, signature: str) -> dict[str, Any]:
        """The event, if the signature matches any configured secret (two during rotation).

        The SDK checks the signature over the raw bytes; the body is then parsed once, with
        orjson, rather than again by the SDK into its own objects."""
        if not self._webhook_secrets:
            raise WebhooksNotConfigured()
        for secret in self._webhook_secrets:
            try:
                stripe.WebhookSignature.verify_header(
                    payload, signature, secret, stripe.Webhook.DEFAULT_TOLERANCE
                )
            except stripe.SignatureVerificationError:
                continue
            except UnicodeDecodeError as error:  # the SDK reads the body as UTF-8 text
                raise InvalidWebhook("the payload is not a JSON object") from error
            break
        else:
            raise InvalidWebhook("no valid signature for a configured secret")
        if _signed_at(signature) > time.time() + stripe.Webhook.DEFAULT_TOLERANCE:
            # The SDK bounds only the age; a signature from the future would stay valid for as
            # long as it is ahead. Same wall clock as the SDK's own check.
            raise InvalidWebhook("the signature's timestamp is in the future")
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise InvalidWebhook("the payload is not a JSON object") from error
        if not isinstance(event, dict):
            raise InvalidWebhook("the payload is not a JSON object")
        return _event_shaped(event)


def _signed_at(signature: str) -> int:
    """The `t=` of a Stripe-Signature header the SDK has verified (so it is there, an integer)."""
    for item in signature.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            return int(value)
    raise InvalidWebhook("no timestamp in the signature")


# Seconds from 1970 to the end of year 9999, the last moment a datetime can hold.
_LAST_CREATED = 253_402_300_799


def _event_shaped(event: dict[str, Any]) -> dict[str, Any]:
    """The event, if it has what the inbox stores and processing reads; signed or not, anything
    else is refused (a 400) rather than failing on insert (a 500 that Stripe would retry)."""
    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    created = event.get("created")
    if not (
        isinstance(event_id, str)
        and 0 < len(event_id) <= 255
        and isinstance(event_type, str)
        and 0 < len(event_type) <= 100
        and isinstance(created, int)
        and 0 <= created <= _LAST_CREATED
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
    ):
        raise InvalidWebhook("the payload is not a Stripe event")
    return event
