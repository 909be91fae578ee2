"""PaymentIntents created by the API, typically to charge a saved card off-session: confirmed at
creation, a test card succeeds, declines (HTTP 402, the intent back to requires_payment_method)
or, off-session, fails with authentication_required as Stripe's 3-D Secure cards do."""

from __future__ import annotations

from stripe_emulator import cards, objects
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError, invalid_param, missing_param
from stripe_emulator.forms import Params
from stripe_emulator.setup_intents import await_authentication
from stripe_emulator.store import JSON, StoredObject, new_id

CREATE_PARAMS = {
    "amount",
    "currency",
    "customer",
    "payment_method",
    "confirm",
    "off_session",
    "metadata",
    "description",
    "setup_future_usage",
    "payment_method_types",
    "receipt_email",
    "expand",
}
OFF_SESSION_VALUES = {"true": True, "false": False, "one_off": True, "recurring": True}
SETUP_FUTURE_USAGES = {"off_session", "on_session"}
CONFIRMABLE = {"requires_payment_method", "requires_confirmation", "requires_action"}
CANCELLATION_REASONS = {"duplicate", "fraudulent", "requested_by_customer", "abandoned"}
# Stripe's minimum charge in USD and the currencies priced like it (others: 50 minor units too).
MINIMUM_AMOUNT = 50


def create_payment_intent(emulator: Emulator, params: Params, cause: Cause) -> JSON:
    params.reject_unknown(CREATE_PARAMS)
    amount = params.required_integer("amount", minimum=1)
    currency = params.required_string("currency").lower()
    if amount < MINIMUM_AMOUNT:
        raise invalid_param(
            "amount",
            f"Amount must be at least {MINIMUM_AMOUNT} minor units of {currency.upper()}.",
            code="amount_too_small",
        )
    types = params.strings("payment_method_types")
    if types and types != ["card"]:
        raise invalid_param("payment_method_types", "The emulator charges only cards by API.")
    confirm = params.boolean("confirm")
    off_session = _off_session(params, confirming=confirm)
    setup_future_usage = params.string("setup_future_usage")
    if setup_future_usage is not None and setup_future_usage not in SETUP_FUTURE_USAGES:
        raise invalid_param(
            "setup_future_usage",
            "Invalid setup_future_usage: must be one of off_session, on_session",
        )
    customer_id, stored = cards.customer_and_payment_method(emulator, params)
    if setup_future_usage is not None and customer_id is None:
        raise missing_param("customer")
    if confirm and stored is None:
        raise StripeError(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "To confirm the PaymentIntent with a customer, you must provide a payment_method.",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    intent = objects.payment_intent(
        intent_id=new_id("pi_"),
        created=emulator.now(),
        amount=amount,
        currency=currency,
        customer_id=customer_id,
        metadata=params.metadata("metadata"),
    )
    intent.update(
        description=params.string("description"),
        receipt_email=params.string("receipt_email"),
        setup_future_usage=setup_future_usage,
        payment_method_types=["card"],
    )
    if stored is not None:
        intent.update(payment_method=stored.data["id"], status="requires_confirmation")
    emulator.store.insert(intent)
    emulator.emit("payment_intent.created", intent, cause)
    if stored is None or not confirm:
        return intent
    return _confirm(emulator, intent, stored, off_session=off_session, cause=cause)


def _off_session(params: Params, *, confirming: bool) -> bool:
    text = params.string("off_session")
    if text is not None and text not in OFF_SESSION_VALUES:
        raise invalid_param("off_session", f"Invalid boolean: {text}")
    if text is not None and not confirming:
        raise invalid_param(
            "off_session", "You may only specify `off_session` when `confirm=true`."
        )
    return OFF_SESSION_VALUES.get(text or "false", False)


def _confirm(
    emulator: Emulator, intent: JSON, stored: StoredObject, *, off_session: bool, cause: Cause
) -> JSON:
    """Charge the card: success, a 402 card error that keeps the failed charge and intent, or
    (on-session, a 3-D Secure card) requires_action."""
    decline = cards.card_of(stored).decline
    if decline is None and cards.needs_authentication(stored, off_session=off_session):
        if not off_session:
            await_authentication(
                emulator, intent, {"type": "use_stripe_sdk", "use_stripe_sdk": {}}, cause
            )
            return intent
        decline = cards.AUTHENTICATION_REQUIRED
    charge = cards.charge(emulator, intent, stored.data, decline, parent=None, cause=cause)
    if decline is not None:
        raise cards.card_error(
            decline,
            keep_writes=True,
            charge=charge["id"],
            payment_intent=intent,
            payment_method=stored.data,
        )
    if intent["setup_future_usage"] is not None and intent["customer"] is not None:
        cards.attach(emulator, stored, intent["customer"], cause)
        if intent["setup_future_usage"] == "off_session":
            cards.mark_set_up(emulator, stored)
    return intent


def _unexpected_state(intent: JSON, action: str) -> StripeError:
    return StripeError(
        f"You cannot {action} this PaymentIntent because it has a status of {intent['status']}.",
        code="payment_intent_unexpected_state",
        details={"payment_intent": intent},
    )


def confirm_payment_intent(
    emulator: Emulator, intent_id: str, params: Params, cause: Cause
) -> JSON:
    """`POST /v1/payment_intents/{id}/confirm` with an optional new `payment_method`."""
    params.reject_unknown({"payment_method", "off_session", "expand"})
    off_session = _off_session(params, confirming=True)
    intent = emulator.load("payment_intent", intent_id, param="intent").data
    if intent["status"] not in CONFIRMABLE:
        raise _unexpected_state(intent, "confirm")
    payment_method_id = params.string("payment_method") or intent["payment_method"]
    if payment_method_id is None:
        raise StripeError(
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    stored = cards.payment_method(emulator, payment_method_id, "payment_method")
    cards.check_usable_by(stored, intent["customer"])
    intent.update(payment_method=stored.data["id"], next_action=None)
    return _confirm(emulator, intent, stored, off_session=off_session, cause=cause)


def cancel_payment_intent(emulator: Emulator, intent_id: str, params: Params, cause: Cause) -> JSON:
    """`POST /v1/payment_intents/{id}/cancel` of an intent that has not succeeded."""
    params.reject_unknown({"cancellation_reason", "expand"})
    reason = params.string("cancellation_reason")
    if reason is not None and reason not in CANCELLATION_REASONS:
        raise invalid_param(
            "cancellation_reason",
            "Invalid cancellation_reason: must be one of "
            + ", ".join(sorted(CANCELLATION_REASONS)),
        )
    intent = emulator.load("payment_intent", intent_id, param="intent").data
    if intent["status"] not in CONFIRMABLE:
        raise _unexpected_state(intent, "cancel")
    intent.update(
        status="canceled",
        canceled_at=emulator.now(),
        cancellation_reason=reason,
        next_action=None,
    )
    emulator.store.update(intent)
    emulator.emit("payment_intent.canceled", intent, cause)
    return intent
