"""Paying a Checkout Session the way Stripe's test mode does: test cards (with declines and an
authentication step), delayed US bank account debits that settle later, and disputes."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from stripe_emulator import objects
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError
from stripe_emulator.store import JSON, new_id

TEST_ROUTING_NUMBER = "110000000"
BANK_ACCOUNT_SUCCEEDS = "000123456789"
BANK_ACCOUNT_FAILS = "000111111113"


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str


@dataclass(frozen=True)
class TestCard:
    brand: str
    decline: Decline | None = None
    requires_authentication: bool = False


_DECLINED = "Your card was declined."
TEST_CARDS: dict[str, TestCard] = {
    "4242424242424242": TestCard("visa"),
    "4000056655665556": TestCard("visa"),
    "5555555555554444": TestCard("mastercard"),
    "2223003122003222": TestCard("mastercard"),
    "5200828282828210": TestCard("mastercard"),
    "378282246310005": TestCard("amex"),
    "6011111111111117": TestCard("discover"),
    "4000000000000002": TestCard("visa", Decline("card_declined", "generic_decline", _DECLINED)),
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
    "4000002760003184": TestCard("visa", requires_authentication=True),
    "4000002500003155": TestCard("visa", requires_authentication=True),
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


class PaymentFormError(Exception):
    """Input the hosted page refuses before any payment is attempted."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CardInput:
    number: str
    exp_month: int
    exp_year: int
    postal_code: str
    email: str

    @property
    def last4(self) -> str:
        return self.number[-4:]


@dataclass(frozen=True)
class BankAccountInput:
    account_number: str
    postal_code: str | None
    email: str


@dataclass(frozen=True)
class PaymentResult:
    """What the page shows next: the success redirect, the authentication step, or an error."""

    status: str  # "succeeded" | "processing" | "requires_action" | "declined"
    message: str | None = None


def _luhn_valid(number: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def parse_email(form: Mapping[str, str], fixed_email: str | None) -> str:
    email = fixed_email or form.get("email", "").strip()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise PaymentFormError("email", "Your email address is invalid.")
    return email


def parse_card(form: Mapping[str, str], email: str, today: dt.date) -> CardInput:
    number = re.sub(r"[\s-]", "", form.get("cardNumber", ""))
    if not number.isdigit() or not 13 <= len(number) <= 19 or not _luhn_valid(number):
        raise PaymentFormError("cardNumber", "Your card number is invalid.")
    expiry = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", form.get("cardExpiry", ""))
    if expiry is None or not 1 <= int(expiry.group(1)) <= 12:
        raise PaymentFormError("cardExpiry", "Your card's expiration date is incomplete.")
    exp_month, exp_year = int(expiry.group(1)), int(expiry.group(2))
    exp_year += 2000 if exp_year < 100 else 0
    if (exp_year, exp_month) < (today.year, today.month):
        raise PaymentFormError("cardExpiry", "Your card's expiration date is in the past.")
    cvc_length = 4 if TEST_CARDS.get(number, TestCard("")).brand == "amex" else 3
    if not re.fullmatch(rf"\d{{{cvc_length}}}", form.get("cardCvc", "").strip()):
        raise PaymentFormError("cardCvc", "Your card's security code is incomplete.")
    postal_code = form.get("billingPostalCode", "").strip()
    if not re.fullmatch(r"[A-Za-z0-9 -]{3,10}", postal_code):
        raise PaymentFormError("billingPostalCode", "Your postal code is incomplete.")
    return CardInput(number, exp_month, exp_year, postal_code, email)


def parse_bank_account(form: Mapping[str, str], email: str) -> BankAccountInput:
    if form.get("routingNumber", "").strip() != TEST_ROUTING_NUMBER:
        raise PaymentFormError(
            "routingNumber", f"Use the test routing number {TEST_ROUTING_NUMBER}."
        )
    account_number = form.get("accountNumber", "").strip()
    if account_number not in (BANK_ACCOUNT_SUCCEEDS, BANK_ACCOUNT_FAILS):
        raise PaymentFormError(
            "accountNumber",
            f"Use the test account number {BANK_ACCOUNT_SUCCEEDS} (succeeds) "
            f"or {BANK_ACCOUNT_FAILS} (fails).",
        )
    postal_code = form.get("billingPostalCode", "").strip() or None
    return BankAccountInput(account_number, postal_code, email)


def _open_session(emulator: Emulator, session_id: str) -> tuple[JSON, JSON]:
    stored = emulator.load("checkout.session", session_id, param="session")
    if stored.data["status"] != "open":
        raise StripeError(f"This Checkout Session is {stored.data['status']}.", param="session")
    return stored.data, stored.internal


def _payment_intent(emulator: Emulator, session: JSON, internal: JSON, cause: Cause) -> JSON:
    """The session's PaymentIntent, created on the first attempt to pay (as Stripe does)."""
    if session["payment_intent"] is not None:
        return emulator.load("payment_intent", session["payment_intent"], param="session").data
    intent = objects.payment_intent(
        intent_id=new_id("pi_"),
        created=emulator.now(),
        amount=session["amount_total"],
        currency=session["currency"],
        customer_id=session["customer"],
        metadata=internal.get("intent_metadata", {}),
    )
    emulator.store.insert(intent, parent=session["id"])
    session["payment_intent"] = intent["id"]
    emulator.store.update(session)
    emulator.emit("payment_intent.created", intent, cause)
    return intent


def _complete_session(
    emulator: Emulator, session: JSON, *, email: str, postal_code: str | None, paid: bool
) -> None:
    session.update(
        status="complete",
        payment_status="paid" if paid else "unpaid",
        url=None,
        customer_details={
            "address": {
                "city": None,
                "country": "US",
                "line1": None,
                "line2": None,
                "postal_code": postal_code,
                "state": None,
            },
            "email": email,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
    )


def pay_with_card(
    emulator: Emulator, session_id: str, card: CardInput, cause: Cause
) -> PaymentResult:
    with emulator.store.transaction():
        session, internal = _open_session(emulator, session_id)
        intent = _payment_intent(emulator, session, internal, cause)
        test_card = TEST_CARDS.get(card.number)
        if test_card is None:
            return _decline_card(emulator, session, intent, card, "visa", LIVE_CARD_DECLINE, cause)
        if test_card.decline is not None:
            return _decline_card(
                emulator, session, intent, card, test_card.brand, test_card.decline, cause
            )
        if test_card.requires_authentication:
            base_url = session["url"]
            intent.update(
                status="requires_action",
                next_action={
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": f"{base_url}/authenticate",
                        "return_url": base_url,
                    },
                },
            )
            emulator.store.update(intent)
            internal["awaiting_authentication"] = asdict(card)
            emulator.store.update(session, internal=internal)
            emulator.emit("payment_intent.requires_action", intent, cause)
            return PaymentResult("requires_action")
        _charge_card(emulator, session, intent, card, test_card.brand, cause)
        return PaymentResult("succeeded")


def finish_authentication(
    emulator: Emulator, session_id: str, *, authenticated: bool, cause: Cause
) -> PaymentResult:
    """The second page of a 3-D Secure card: complete pays, fail declines and reopens."""
    with emulator.store.transaction():
        session, internal = _open_session(emulator, session_id)
        pending = internal.pop("awaiting_authentication", None)
        if pending is None:
            raise StripeError("This Checkout Session has no payment awaiting authentication.")
        emulator.store.update(session, internal=internal)
        card = CardInput(**pending)
        intent = _payment_intent(emulator, session, internal, cause)
        intent["next_action"] = None
        if not authenticated:
            return _decline_card(
                emulator, session, intent, card, "visa", AUTHENTICATION_FAILED, cause
            )
        _charge_card(emulator, session, intent, card, "visa", cause)
        return PaymentResult("succeeded")


def _card_charge(
    emulator: Emulator,
    intent: JSON,
    card: CardInput,
    brand: str,
    *,
    status: str,
    outcome: JSON,
    failure_code: str | None = None,
    failure_message: str | None = None,
) -> JSON:
    """A card charge of the intent, as it succeeded or failed."""
    return objects.charge(
        charge_id=new_id("ch_"),
        created=emulator.now(),
        intent=intent,
        payment_method_id=new_id("pm_"),
        payment_method_details=objects.card_details(
            brand=brand, last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year
        ),
        billing_email=card.email,
        billing_postal_code=card.postal_code,
        status=status,
        outcome=outcome,
        failure_code=failure_code,
        failure_message=failure_message,
    )


def _charge_card(
    emulator: Emulator, session: JSON, intent: JSON, card: CardInput, brand: str, cause: Cause
) -> None:
    charge = _card_charge(
        emulator,
        intent,
        card,
        brand,
        status="succeeded",
        outcome=objects.outcome(
            outcome_type="authorized",
            network_status="approved_by_network",
            seller_message="Payment complete.",
        ),
    )
    emulator.store.insert(charge, parent=session["id"])
    emulator.emit("charge.succeeded", charge, cause)
    intent.update(
        status="succeeded",
        amount_received=intent["amount"],
        latest_charge=charge["id"],
        payment_method=charge["payment_method"],
        last_payment_error=None,
        next_action=None,
    )
    emulator.store.update(intent)
    emulator.emit("payment_intent.succeeded", intent, cause)
    _complete_session(emulator, session, email=card.email, postal_code=card.postal_code, paid=True)
    emulator.store.update(session)
    emulator.emit("checkout.session.completed", session, cause)


def _decline_card(
    emulator: Emulator,
    session: JSON,
    intent: JSON,
    card: CardInput,
    brand: str,
    decline: Decline,
    cause: Cause,
) -> PaymentResult:
    charge = _card_charge(
        emulator,
        intent,
        card,
        brand,
        status="failed",
        outcome=objects.outcome(
            outcome_type="issuer_declined",
            network_status="declined_by_network",
            reason=decline.decline_code,
            seller_message="The bank did not return any further details with this decline.",
        ),
        failure_code=decline.code,
        failure_message=decline.message,
    )
    emulator.store.insert(charge, parent=session["id"])
    emulator.emit("charge.failed", charge, cause)
    intent.update(
        status="requires_payment_method",
        latest_charge=charge["id"],
        payment_method=None,
        last_payment_error={
            "charge": charge["id"],
            "code": decline.code,
            "decline_code": decline.decline_code,
            "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
            "message": decline.message,
            "payment_method_type": "card",
            "type": "card_error",
        },
    )
    emulator.store.update(intent)
    emulator.emit("payment_intent.payment_failed", intent, cause)
    return PaymentResult("declined", decline.message)


def pay_with_bank_account(
    emulator: Emulator, session_id: str, account: BankAccountInput, cause: Cause
) -> PaymentResult:
    """Completes the session unpaid; the timer settles it `async_settle_seconds` later."""
    with emulator.store.transaction():
        session, internal = _open_session(emulator, session_id)
        intent = _payment_intent(emulator, session, internal, cause)
        charge = objects.charge(
            charge_id=new_id("py_"),
            created=emulator.now(),
            intent=intent,
            payment_method_id=new_id("pm_"),
            payment_method_details=objects.bank_account_details(
                last4=account.account_number[-4:], routing_number=TEST_ROUTING_NUMBER
            ),
            billing_email=account.email,
            billing_postal_code=account.postal_code,
            status="pending",
            outcome=objects.outcome(
                outcome_type="authorized",
                network_status="approved_by_network",
                seller_message="Payment complete.",
            ),
        )
        emulator.store.insert(charge, parent=session["id"])
        emulator.emit("charge.pending", charge, cause)
        intent.update(
            status="processing",
            latest_charge=charge["id"],
            payment_method=charge["payment_method"],
            last_payment_error=None,
        )
        emulator.store.update(intent)
        emulator.emit("payment_intent.processing", intent, cause)
        _complete_session(
            emulator, session, email=account.email, postal_code=account.postal_code, paid=False
        )
        internal["settle_at"] = time.time() + emulator.config.async_settle_seconds
        internal["bank_payment_succeeds"] = account.account_number == BANK_ACCOUNT_SUCCEEDS
        emulator.store.update(session, internal=internal)
        emulator.emit("checkout.session.completed", session, cause)
    return PaymentResult("processing")


def settle_bank_payment(emulator: Emulator, session_id: str, cause: Cause) -> None:
    with emulator.store.transaction():
        stored = emulator.load("checkout.session", session_id, param="session")
        session, internal = stored.data, stored.internal
        if "settle_at" not in internal:
            raise StripeError("This Checkout Session has no bank payment to settle.")
        succeeds = bool(internal.pop("bank_payment_succeeds"))
        del internal["settle_at"]
        intent = emulator.load("payment_intent", session["payment_intent"], param="session").data
        charge = emulator.load("charge", intent["latest_charge"], param="session").data
        if succeeds:
            charge.update(
                status="succeeded", paid=True, captured=True, amount_captured=charge["amount"]
            )
            emulator.store.update(charge)
            emulator.emit("charge.succeeded", charge, cause)
            intent.update(status="succeeded", amount_received=intent["amount"])
            emulator.store.update(intent)
            emulator.emit("payment_intent.succeeded", intent, cause)
            session["payment_status"] = "paid"
            emulator.store.update(session, internal=internal)
            emulator.emit("checkout.session.async_payment_succeeded", session, cause)
            return
        message = "The customer's bank account has been closed."
        charge.update(status="failed", failure_code="account_closed", failure_message=message)
        emulator.store.update(charge)
        emulator.emit("charge.failed", charge, cause)
        intent.update(
            status="requires_payment_method",
            payment_method=None,
            last_payment_error={
                "charge": charge["id"],
                "code": "account_closed",
                "message": message,
                "payment_method_type": "us_bank_account",
                "type": "invalid_request_error",
            },
        )
        emulator.store.update(intent)
        emulator.emit("payment_intent.payment_failed", intent, cause)
        emulator.store.update(session, internal=internal)
        emulator.emit("checkout.session.async_payment_failed", session, cause)


def settle_due_bank_payments(emulator: Emulator) -> None:
    due = emulator.store.ids_where(
        "checkout.session", "json_extract(internal, '$.settle_at') <= ?", (time.time(),)
    )
    for session_id in due:
        settle_bank_payment(emulator, session_id, Cause())


def succeeded_charge(emulator: Emulator, session: JSON) -> JSON:
    """The session's successful charge, for refunds and disputes."""
    if session["payment_intent"] is not None:
        intent = emulator.load("payment_intent", session["payment_intent"], param="session").data
        if intent["latest_charge"] is not None:
            charge = emulator.load("charge", intent["latest_charge"], param="session").data
            if charge["status"] == "succeeded":
                return charge
    raise StripeError(f"Checkout Session {session['id']} has no successful payment.")


def dispute_payment(emulator: Emulator, session_id: str, cause: Cause) -> JSON:
    with emulator.store.transaction():
        session = emulator.load("checkout.session", session_id, param="session").data
        charge = succeeded_charge(emulator, session)
        dispute = objects.dispute(
            dispute_id=new_id("dp_"), created=emulator.now(), charge_object=charge
        )
        emulator.store.insert(dispute, parent=charge["id"])
        charge["disputed"] = True
        emulator.store.update(charge)
        emulator.emit("charge.dispute.created", dispute, cause)
    return dispute
