"""PaymentIntents created by the API, typically to charge a saved card off-session: confirmed at
creation, a test card succeeds, declines (HTTP 402, the intent back to requires_payment_method)
or, off-session, fails with authentication_required as Stripe's 3-D Secure cards do."""

from __future__ import annotations

from stripe_emulator import cards, objects
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError, invalid_param, missing_param
from stripe_emulator.forms import Params
from stripe_emulator.setup_intents import await_authentication
from stripe_emulator.store import JSON, new_id

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
    off_session_text = params.string("off_session")
    if off_session_text is not None and off_session_text not in OFF_SESSION_VALUES:
        raise invalid_param("off_session", f"Invalid boolean: {off_session_text}")
    off_session = OFF_SESSION_VALUES.get(off_session_text or "false", False)
    confirm = params.boolean("confirm")
    if off_session_text is not None and not confirm:
        raise invalid_param(
            "off_session", "You may only specify `off_session` when `confirm=true`."
        )
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
    card = cards.card_of(stored)
    decline = card.decline
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
    if setup_future_usage is not None and customer_id is not None:
        cards.attach(emulator, stored, customer_id, cause)
        if setup_future_usage == "off_session":
            cards.mark_set_up(emulator, stored)
    return intent
