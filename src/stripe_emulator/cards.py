"""Card PaymentMethods and what Stripe's test cards do: creation from a number or a test token
(`pm_card_visa`), attaching to and detaching from a Customer, and charging a card for a
PaymentIntent, as the hosted page and the API both do."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from stripe_emulator import objects
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import DOCS, StripeError, invalid_param, missing_param
from stripe_emulator.forms import Params
from stripe_emulator.store import JSON, StoredObject, new_id


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str | None
    message: str


@dataclass(frozen=True)
class TestCard:
    brand: str
    decline: Decline | None = None
    # True: the decline happens only when the card is charged; attaching and setting up succeed.
    declines_only_charges: bool = False
    # "always": every payment needs 3-D Secure, off-session ones fail; "unless_set_up": only
    # until the card was set up for off-session use (a SetupIntent or setup_future_usage).
    authentication: str | None = None
    funding: str = "credit"
    country: str = "US"


_DECLINED = "Your card was declined."
GENERIC_DECLINE = Decline("card_declined", "generic_decline", _DECLINED)
TEST_CARDS: dict[str, TestCard] = {
    "4242424242424242": TestCard("visa"),
    "4000056655665556": TestCard("visa", funding="debit"),
    "5555555555554444": TestCard("mastercard"),
    "2223003122003222": TestCard("mastercard"),
    "5200828282828210": TestCard("mastercard", funding="debit"),
    "378282246310005": TestCard("amex"),
    "6011111111111117": TestCard("discover"),
    "4000000000000002": TestCard("visa", GENERIC_DECLINE),
    "4000000000000341": TestCard("visa", GENERIC_DECLINE, declines_only_charges=True),
    "4000000000009995": TestCard(
        "visa", Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
    ),
    "4000000000000069": TestCard(
        "visa", Decline("expired_card", "expired_card", "Your card has expired.")
    ),
    "4000000000000127": TestCard(
        "visa",
        Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ),
    "4000000000000119": TestCard(
        "visa",
        Decline(
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
    ),
    "4000002760003184": TestCard("visa", authentication="always", country="DE"),
    "4000002500003155": TestCard("visa", authentication="unless_set_up", country="DE"),
}
# Stripe's test PaymentMethods: usable wherever a PaymentMethod id is, each use a new one.
TEST_TOKENS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_amex": "378282246310005",
    "pm_card_discover": "6011111111111117",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
}
# Stripe's answer to a real card number in test mode.
LIVE_CARD_DECLINE = Decline(
    "card_declined",
    "test_mode_live_card",
    "Your card was declined. Your request was in test mode, but used a non test card.",
)
AUTHENTICATION_FAILED = Decline(
    "payment_intent_authentication_failure",
    "authentication_required",
    "We are unable to authenticate your payment method. "
    "Please choose a different payment method and try again.",
)
# An off-session payment (or a setup) of a card that needs 3-D Secure.
AUTHENTICATION_REQUIRED = Decline(
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)
_BRANDS_BY_FIRST_DIGIT = {"2": "mastercard", "3": "amex", "4": "visa", "5": "mastercard"}
CREATE_PARAMS = {"type", "card", "billing_details", "metadata", "expand"}


def test_card(number: str) -> TestCard:
    """The card's behaviour; a number that is not a test card is a live card, always declined."""
    known = TEST_CARDS.get(number)
    if known is not None:
        return known
    brand = _BRANDS_BY_FIRST_DIGIT.get(number[:1], "discover")
    return TestCard(brand, LIVE_CARD_DECLINE)


def _fingerprint(number: str) -> str:
    """Stable per card number, as Stripe's is within an account."""
    return hashlib.sha256(number.encode()).hexdigest()[:16]


def new_card(
    emulator: Emulator,
    *,
    number: str,
    exp_month: int,
    exp_year: int,
    billing: JSON,
    metadata: dict[str, str] | None = None,
) -> StoredObject:
    """A new, unattached card PaymentMethod (Stripe sends no event for its creation)."""
    card = test_card(number)
    payment_method = objects.card_payment_method(
        payment_method_id=new_id("pm_"),
        created=emulator.now(),
        card=objects.card_facts(
            brand=card.brand,
            last4=number[-4:],
            exp_month=exp_month,
            exp_year=exp_year,
            fingerprint=_fingerprint(number),
            funding=card.funding,
            country=card.country,
        ),
        billing=billing,
        metadata=metadata or {},
    )
    internal: JSON = {"number": number, "set_up": False, "detached": False}
    emulator.store.insert(payment_method, internal=internal)
    return StoredObject(payment_method, internal)


def _from_token(emulator: Emulator, token: str) -> StoredObject:
    year = emulator.today().year + 1
    billing = objects.billing_details(email=None, postal_code=None, name=None)
    return new_card(
        emulator, number=TEST_TOKENS[token], exp_month=12, exp_year=year, billing=billing
    )


def payment_method(emulator: Emulator, payment_method_id: str, param: str) -> StoredObject:
    """A PaymentMethod by id; a test token (`pm_card_visa`) makes a new one each time."""
    if payment_method_id in TEST_TOKENS:
        return _from_token(emulator, payment_method_id)
    return emulator.load("payment_method", payment_method_id, param=param)


def card_of(stored: StoredObject) -> TestCard:
    return test_card(str(stored.internal["number"]))


def create_payment_method(emulator: Emulator, params: Params) -> JSON:
    """`POST /v1/payment_methods` with `type=card` and `card[number|exp_month|exp_year|cvc]`."""
    params.reject_unknown(CREATE_PARAMS)
    if params.required_string("type") != "card":
        raise invalid_param("type", "The emulator creates only card PaymentMethods.")
    card = params.nested("card")
    if card is None:
        raise missing_param("card")
    card.reject_unknown({"number", "exp_month", "exp_year", "cvc"})
    number = card.required_string("number").replace(" ", "")
    if not number.isdigit() or not 13 <= len(number) <= 19:
        raise card_error(
            Decline("invalid_number", "invalid_number", "Your card number is incorrect."),
            param="card[number]",
        )
    exp_month = card.required_integer("exp_month", minimum=1)
    exp_year = card.required_integer("exp_year", minimum=2000)
    billing = params.nested("billing_details") or Params({}, "billing_details")
    billing.reject_unknown({"email", "name", "address"})
    address = billing.nested("address") or Params({}, "billing_details[address]")
    stored = new_card(
        emulator,
        number=number,
        exp_month=exp_month,
        exp_year=exp_year,
        billing=objects.billing_details(
            email=billing.string("email"),
            postal_code=address.string("postal_code"),
            name=billing.string("name"),
        ),
        metadata=params.metadata("metadata"),
    )
    return stored.data


def card_error(
    decline: Decline,
    *,
    param: str | None = None,
    keep_writes: bool = False,
    **details: Any,
) -> StripeError:
    """Stripe's 402 `card_error`; `details` are the objects it is about (`payment_intent`...)."""
    return StripeError(
        decline.message,
        status=402,
        error_type="card_error",
        code=decline.code,
        decline_code=decline.decline_code,
        param=param,
        details=details,
        keep_writes=keep_writes,
    )


def last_error(decline: Decline, payment_method: JSON, charge_id: str | None) -> JSON:
    """A PaymentIntent's `last_payment_error` or a SetupIntent's `last_setup_error`."""
    error: JSON = {
        "code": decline.code,
        "doc_url": DOCS + decline.code.replace("_", "-"),
        "message": decline.message,
        "payment_method": payment_method,
        "payment_method_type": "card",
        "type": "card_error",
    }
    if decline.decline_code is not None:
        error["decline_code"] = decline.decline_code
    if charge_id is not None:
        error["charge"] = charge_id
    return error


def check_usable_by(stored: StoredObject, customer_id: str | None) -> None:
    """A payment or setup may use a PaymentMethod that is unattached or the customer's own."""
    if stored.internal["detached"]:
        raise StripeError(
            "The provided PaymentMethod was previously used with a PaymentIntent without "
            "Customer attachment, shared with a connected account without Customer attachment, "
            "or was detached from a Customer. It may not be used again. To use a PaymentMethod "
            "multiple times, you must attach it to a Customer first.",
            param="payment_method",
        )
    owner = stored.data["customer"]
    if owner is not None and owner != customer_id:
        raise StripeError(
            f"The provided PaymentMethod is attached to a Customer ({owner}); to use it, "
            "`customer` must be that Customer.",
            param="payment_method",
        )


def customer_and_payment_method(
    emulator: Emulator, params: Params
) -> tuple[str | None, StoredObject | None]:
    """An intent's `customer` and `payment_method` (a test token makes a new card), checked."""
    customer_id = params.string("customer")
    if customer_id is not None:
        emulator.load("customer", customer_id, param="customer")
    payment_method_id = params.string("payment_method")
    if payment_method_id is None:
        return customer_id, None
    stored = payment_method(emulator, payment_method_id, "payment_method")
    check_usable_by(stored, customer_id)
    return customer_id, stored


def attach(emulator: Emulator, stored: StoredObject, customer_id: str, cause: Cause) -> JSON:
    """Attach to a Customer; a card that declines (other than 0341) is refused, as on Stripe."""
    payment_method, internal = stored.data, stored.internal
    emulator.load("customer", customer_id, param="customer")
    if payment_method["customer"] == customer_id:
        return payment_method
    if payment_method["customer"] is not None:
        raise StripeError(
            "The payment method you provided has already been attached to a customer.",
            param="payment_method",
        )
    if internal["detached"]:
        raise StripeError(
            "This PaymentMethod was previously used without being attached to a Customer or "
            "was detached from a Customer, and may not be used again.",
            param="payment_method",
        )
    card = card_of(stored)
    if card.decline is not None and not card.declines_only_charges:
        raise card_error(card.decline)
    payment_method["customer"] = customer_id
    emulator.store.update(payment_method)
    emulator.emit("payment_method.attached", payment_method, cause)
    return payment_method


def detach(emulator: Emulator, payment_method_id: str, cause: Cause) -> JSON:
    """Detach; the customer's default payment method is cleared if it was this one."""
    stored = emulator.load("payment_method", payment_method_id, param="payment_method")
    payment_method, internal = stored.data, stored.internal
    customer_id = payment_method["customer"]
    if customer_id is None:
        raise StripeError(
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible.",
            param="payment_method",
        )
    customer = emulator.load("customer", customer_id, param="customer").data
    settings = customer["invoice_settings"]
    if settings["default_payment_method"] == payment_method_id:
        previous = {"invoice_settings": {"default_payment_method": payment_method_id}}
        settings["default_payment_method"] = None
        emulator.store.update(customer)
        emulator.emit("customer.updated", customer, cause, previous_attributes=previous)
    payment_method["customer"] = None
    internal["detached"] = True
    emulator.store.update(payment_method, internal=internal)
    emulator.emit(
        "payment_method.detached",
        payment_method,
        cause,
        previous_attributes={"customer": customer_id},
    )
    return payment_method


def mark_set_up(emulator: Emulator, stored: StoredObject) -> None:
    """Set up for off-session use: a card needing 3-D Secure only until then stops needing it."""
    stored.internal["set_up"] = True
    emulator.store.update(stored.data, internal=stored.internal)


def needs_authentication(stored: StoredObject, *, off_session: bool) -> bool:
    card = card_of(stored)
    if card.authentication == "always":
        return True
    return card.authentication == "unless_set_up" and not (
        off_session and stored.internal["set_up"]
    )


def charge(
    emulator: Emulator,
    intent: JSON,
    payment_method: JSON,
    decline: Decline | None,
    *,
    parent: str | None,
    cause: Cause,
) -> JSON:
    """Charge the card for the intent: a charge that succeeded (the intent succeeds) or failed
    with `decline` (the intent needs a new payment method). Returns the charge."""
    if decline is None:
        result = objects.outcome(
            outcome_type="authorized",
            network_status="approved_by_network",
            seller_message="Payment complete.",
        )
    else:
        result = objects.outcome(
            outcome_type="issuer_declined",
            network_status="declined_by_network",
            reason=decline.decline_code,
            seller_message="The bank did not return any further details with this decline.",
        )
    new_charge = objects.charge(
        charge_id=new_id("ch_"),
        created=emulator.now(),
        intent=intent,
        payment_method_id=payment_method["id"],
        payment_method_details=objects.card_details(payment_method["card"]),
        billing=payment_method["billing_details"],
        status="succeeded" if decline is None else "failed",
        outcome=result,
        failure_code=None if decline is None else decline.code,
        failure_message=None if decline is None else decline.message,
    )
    emulator.store.insert(new_charge, parent=parent)
    if decline is None:
        emulator.emit("charge.succeeded", new_charge, cause)
        intent.update(
            status="succeeded",
            amount_received=intent["amount"],
            latest_charge=new_charge["id"],
            payment_method=payment_method["id"],
            last_payment_error=None,
            next_action=None,
        )
        emulator.store.update(intent)
        emulator.emit("payment_intent.succeeded", intent, cause)
    else:
        emulator.emit("charge.failed", new_charge, cause)
        intent.update(
            status="requires_payment_method",
            latest_charge=new_charge["id"],
            payment_method=None,
            next_action=None,
            last_payment_error=last_error(decline, payment_method, new_charge["id"]),
        )
        emulator.store.update(intent)
        emulator.emit("payment_intent.payment_failed", intent, cause)
    return new_charge
