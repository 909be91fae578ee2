"""SetupIntents: saving a card for later without charging it, from the API or a Checkout Session
in setup mode. A card that declines is refused (0341 sets up fine and declines only charges);
one needing 3-D Secure waits for authentication, which only the hosted page can give."""

from __future__ import annotations

from stripe_emulator import cards, objects
from stripe_emulator.cards import Decline
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import invalid_param
from stripe_emulator.forms import Params
from stripe_emulator.store import JSON, StoredObject, new_id

CREATE_PARAMS = {
    "customer",
    "payment_method",
    "confirm",
    "usage",
    "metadata",
    "description",
    "payment_method_types",
    "expand",
}
USAGES = {"off_session", "on_session"}
AUTHENTICATION_FAILED = Decline(
    "setup_intent_authentication_failure",
    None,
    "The latest attempt to set up the payment method has failed because authentication failed.",
)


def new_setup_intent(
    emulator: Emulator,
    *,
    customer_id: str | None,
    usage: str,
    description: str | None,
    metadata: dict[str, str],
    parent: str | None,
    cause: Cause,
) -> JSON:
    intent = objects.setup_intent(
        intent_id=new_id("seti_"),
        created=emulator.now(),
        customer_id=customer_id,
        usage=usage,
        description=description,
        metadata=metadata,
    )
    emulator.store.insert(intent, parent=parent)
    emulator.emit("setup_intent.created", intent, cause)
    return intent


def succeed(emulator: Emulator, intent: JSON, stored: StoredObject, cause: Cause) -> None:
    """The card is set up: attached to the intent's customer, usable off-session."""
    if intent["customer"] is not None:
        cards.attach(emulator, stored, intent["customer"], cause)
    if intent["usage"] == "off_session":
        cards.mark_set_up(emulator, stored)
    intent.update(
        status="succeeded",
        payment_method=stored.data["id"],
        last_setup_error=None,
        next_action=None,
    )
    emulator.store.update(intent)
    emulator.emit("setup_intent.succeeded", intent, cause)


def fail(
    emulator: Emulator, intent: JSON, payment_method: JSON, decline: Decline, cause: Cause
) -> None:
    intent.update(
        status="requires_payment_method",
        payment_method=None,
        next_action=None,
        last_setup_error=cards.last_error(decline, payment_method, None),
    )
    emulator.store.update(intent)
    emulator.emit("setup_intent.setup_failed", intent, cause)


def setup_decline(stored: StoredObject) -> Decline | None:
    """Why setting up this card fails, if it does (0341 sets up; it declines only charges)."""
    card = cards.card_of(stored)
    return None if card.declines_only_charges else card.decline


def await_authentication(emulator: Emulator, intent: JSON, next_action: JSON, cause: Cause) -> None:
    """Either intent (payment or setup) waits for the customer's 3-D Secure."""
    intent.update(status="requires_action", next_action=next_action)
    emulator.store.update(intent)
    emulator.emit(f"{intent['object']}.requires_action", intent, cause)


def create_setup_intent(emulator: Emulator, params: Params, cause: Cause) -> JSON:
    """`POST /v1/setup_intents`; with `confirm=true` the card is set up at once."""
    params.reject_unknown(CREATE_PARAMS)
    types = params.strings("payment_method_types")
    if types and types != ["card"]:
        raise invalid_param("payment_method_types", "The emulator sets up only cards.")
    usage = params.string("usage") or "off_session"
    if usage not in USAGES:
        raise invalid_param("usage", f"Invalid usage: must be one of {', '.join(sorted(USAGES))}")
    customer_id, stored = cards.customer_and_payment_method(emulator, params)
    confirm = params.boolean("confirm")
    if confirm and stored is None:
        raise invalid_param(
            "payment_method",
            "You cannot confirm this SetupIntent because it's missing a payment method.",
        )
    intent = new_setup_intent(
        emulator,
        customer_id=customer_id,
        usage=usage,
        description=params.string("description"),
        metadata=params.metadata("metadata"),
        parent=None,
        cause=cause,
    )
    if stored is None:
        return intent
    intent.update(payment_method=stored.data["id"], status="requires_confirmation")
    emulator.store.update(intent)
    if not confirm:
        return intent
    decline = setup_decline(stored)
    if decline is not None:
        fail(emulator, intent, stored.data, decline, cause)
        raise cards.card_error(
            decline, keep_writes=True, setup_intent=intent, payment_method=stored.data
        )
    if cards.needs_authentication(stored, off_session=False):
        await_authentication(
            emulator, intent, {"type": "use_stripe_sdk", "use_stripe_sdk": {}}, cause
        )
        return intent
    succeed(emulator, intent, stored, cause)
    return intent
