"""Checkout Sessions: creation from Stripe's parameters, expiry by request and by the clock."""

from __future__ import annotations

from stripe_emulator import objects
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError, invalid_param, missing_param
from stripe_emulator.forms import Params
from stripe_emulator.store import JSON, new_id

MAX_SESSION_LIFETIME_SECONDS = 24 * 3600
# A client computing "now + 30 min" may be a second or two behind our clock.
CLOCK_SKEW_SECONDS = 10
CREATE_PARAMS = {
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "customer",
    "customer_email",
    "metadata",
    "payment_intent_data",
    "expires_at",
    "expand",
    "payment_method_types",
    "locale",
    "submit_type",
    "setup_intent_data",
    "currency",
}
MODES = {"payment", "setup"}


def create_session(emulator: Emulator, params: Params, cause: Cause, base_url: str) -> JSON:
    params.reject_unknown(CREATE_PARAMS)
    mode = params.required_string("mode")
    if mode not in MODES:
        raise invalid_param(
            "mode", f"The emulator supports mode=payment and mode=setup, not '{mode}'."
        )
    success_url = params.required_string("success_url")
    customer_id = params.string("customer")
    customer_email = params.string("customer_email")
    if customer_id and customer_email:
        raise invalid_param(
            "customer_email",
            "You may only specify one of these parameters: customer, customer_email.",
        )
    if customer_id:
        emulator.load("customer", customer_id, param="customer")
    now = emulator.now()
    expires_at = params.integer("expires_at") or now + MAX_SESSION_LIFETIME_SECONDS
    earliest = now + emulator.config.min_session_lifetime_seconds - CLOCK_SKEW_SECONDS
    if not earliest <= expires_at <= now + MAX_SESSION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise invalid_param(
            "expires_at",
            "The `expires_at` timestamp must be between "
            f"{emulator.config.min_session_lifetime_seconds // 60} minutes and 24 hours from "
            "Checkout Session creation.",
        )
    session_id = new_id("cs_test_", 58)
    with emulator.store.transaction():
        if mode == "setup":
            currency, amount_total, internal = _setup_mode(params)
        else:
            currency, amount_total, internal = _payment_mode(emulator, params, session_id, now)
        session = objects.checkout_session(
            session_id=session_id,
            created=now,
            expires_at=expires_at,
            currency=currency,
            amount_total=amount_total,
            url=f"{base_url}/c/pay/{session_id}",
            success_url=success_url,
            cancel_url=params.string("cancel_url"),
            client_reference_id=params.string("client_reference_id"),
            customer_id=customer_id,
            customer_email=customer_email,
            metadata=params.metadata("metadata"),
        )
        if mode == "setup":
            session.update(
                mode="setup",
                payment_status="no_payment_required",
                payment_method_types=["card"],
                amount_subtotal=None,
                total_details=None,
            )
        emulator.store.insert(session, internal=internal)
    return session


def _payment_mode(
    emulator: Emulator, params: Params, session_id: str, now: int
) -> tuple[str, int, JSON]:
    """The currency and total of the line items, and what the PaymentIntent will carry."""
    if params.nested("setup_intent_data") is not None:
        raise invalid_param(
            "setup_intent_data", "`setup_intent_data` can only be used in `setup` mode."
        )
    items = [
        _create_line_item(emulator, item, session_id, now) for item in params.items("line_items")
    ]
    if not items:
        raise missing_param("line_items")
    currencies = {item["currency"] for item in items}
    if len(currencies) > 1:
        raise invalid_param("line_items", "All line items must use the same currency.")
    currency = params.string("currency")
    if currency is not None and {currency.lower()} != currencies:
        raise invalid_param("currency", "`currency` must match the line items' currency.")
    intent_data = params.nested("payment_intent_data") or Params({}, "payment_intent_data")
    intent_data.reject_unknown({"metadata", "setup_future_usage", "description"})
    setup_future_usage = intent_data.string("setup_future_usage")
    if setup_future_usage not in (None, "off_session", "on_session"):
        raise invalid_param(
            intent_data.name("setup_future_usage"),
            "Invalid setup_future_usage: must be one of off_session, on_session",
        )
    internal = {
        "intent_metadata": intent_data.metadata("metadata"),
        "setup_future_usage": setup_future_usage,
    }
    return currencies.pop(), sum(item["amount_total"] for item in items), internal


def _setup_mode(params: Params) -> tuple[str | None, None, JSON]:
    """No line items and no amount; `currency` is required unless the types are given."""
    if params.items("line_items"):
        raise invalid_param("line_items", "You cannot pass `line_items` in `setup` mode.")
    if params.nested("payment_intent_data") is not None:
        raise invalid_param(
            "payment_intent_data", "`payment_intent_data` can only be used in `payment` mode."
        )
    currency = params.string("currency")
    types = params.strings("payment_method_types")
    if currency is None and not types:
        raise missing_param("currency")
    if types and types != ["card"]:
        raise invalid_param("payment_method_types", "The emulator sets up only cards.")
    setup_data = params.nested("setup_intent_data") or Params({}, "setup_intent_data")
    setup_data.reject_unknown({"metadata", "description"})
    internal = {
        "intent_metadata": setup_data.metadata("metadata"),
        "setup_description": setup_data.string("description"),
    }
    return None if currency is None else currency.lower(), None, internal


def _create_line_item(emulator: Emulator, item: Params, session_id: str, now: int) -> JSON:
    if item.string("price") is not None:
        raise invalid_param(item.name("price"), "The emulator supports only `price_data` prices.")
    quantity = item.required_integer("quantity", minimum=1)
    price_data = item.nested("price_data")
    if price_data is None:
        raise missing_param(item.name("price_data"))
    currency = price_data.required_string("currency").lower()
    unit_amount = price_data.required_integer("unit_amount", minimum=0)
    product_data = price_data.nested("product_data")
    if product_data is None:
        raise missing_param(price_data.name("product_data"))
    product = objects.product(
        product_id=new_id("prod_", 14),
        created=now,
        name=product_data.required_string("name"),
        description=product_data.string("description"),
        metadata=product_data.metadata("metadata"),
    )
    price = objects.price(
        price_id=new_id("price_"),
        created=now,
        currency=currency,
        unit_amount=unit_amount,
        product_id=product["id"],
    )
    line_item = objects.line_item(
        item_id=new_id("li_"), price_object=price, description=product["name"], quantity=quantity
    )
    emulator.store.insert(product)
    emulator.store.insert(price)
    emulator.store.insert(line_item, parent=session_id)
    return line_item


def line_items(emulator: Emulator, session_id: str) -> list[JSON]:
    """All of a session's line items, oldest first (a session has at most 100)."""
    return emulator.store.page("item", parent=session_id, limit=100, newest_first=False).data


def expire_session(emulator: Emulator, session_id: str, cause: Cause) -> JSON:
    with emulator.store.transaction():
        stored = emulator.load("checkout.session", session_id, param="session")
        session = stored.data
        if session["status"] != "open":
            raise StripeError(
                'Only Checkout Sessions with a status in ["open"] can be expired.',
                param="session",
            )
        session.update(status="expired", url=None)
        emulator.store.update(session)
        emulator.emit("checkout.session.expired", session, cause)
    return session


def expire_due_sessions(emulator: Emulator) -> None:
    """Expire open sessions whose `expires_at` has passed (Stripe does this within minutes)."""
    due = emulator.store.ids_where(
        "checkout.session",
        "json_extract(data, '$.status') = 'open' AND json_extract(data, '$.expires_at') <= ?",
        (emulator.now(),),
    )
    for session_id in due:
        expire_session(emulator, session_id, Cause())
