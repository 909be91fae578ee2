"""Paying a Checkout Session, or saving a card in a setup-mode one, the way Stripe's test mode
does: test cards (with declines and an authentication step), delayed US bank account debits
that settle later, and disputes."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from stripe_emulator import cards, objects, setup_intents
from stripe_emulator.cards import Decline
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError
from stripe_emulator.store import JSON, StoredObject, new_id

TEST_ROUTING_NUMBER = "110000000"
BANK_ACCOUNT_SUCCEEDS = "000123456789"
BANK_ACCOUNT_FAILS = "000111111113"


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
    known = cards.TEST_CARDS.get(number)
    cvc_length = 4 if known is not None and known.brand == "amex" else 3
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
    intent["setup_future_usage"] = internal.get("setup_future_usage")
    emulator.store.insert(intent, parent=session["id"])
    session["payment_intent"] = intent["id"]
    emulator.store.update(session)
    emulator.emit("payment_intent.created", intent, cause)
    return intent


def _setup_intent(emulator: Emulator, session: JSON, internal: JSON, cause: Cause) -> JSON:
    """A setup-mode session's SetupIntent, created on the first attempt to save a card."""
    if session["setup_intent"] is not None:
        return emulator.load("setup_intent", session["setup_intent"], param="session").data
    intent = setup_intents.new_setup_intent(
        emulator,
        customer_id=session["customer"],
        usage="off_session",
        description=internal.get("setup_description"),
        metadata=internal.get("intent_metadata", {}),
        parent=session["id"],
        cause=cause,
    )
    session["setup_intent"] = intent["id"]
    emulator.store.update(session)
    return intent


def _intent(emulator: Emulator, session: JSON, internal: JSON, cause: Cause) -> JSON:
    if session["mode"] == "setup":
        return _setup_intent(emulator, session, internal, cause)
    return _payment_intent(emulator, session, internal, cause)


def _complete_session(
    emulator: Emulator,
    session: JSON,
    *,
    email: str | None,
    postal_code: str | None,
    payment_status: str,
    cause: Cause | None = None,
) -> None:
    """Complete the session; with `cause`, store it and send checkout.session.completed."""
    session.update(
        status="complete",
        payment_status=payment_status,
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
    if cause is not None:
        emulator.store.update(session)
        emulator.emit("checkout.session.completed", session, cause)


def pay_with_card(
    emulator: Emulator, session_id: str, card: CardInput, cause: Cause
) -> PaymentResult:
    """Pay a payment-mode session, or save the card of a setup-mode one."""
    with emulator.store.transaction():
        session, internal = _open_session(emulator, session_id)
        stored = cards.new_card(
            emulator,
            number=card.number,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            billing=objects.billing_details(
                email=card.email, postal_code=card.postal_code, name=None
            ),
        )
        intent = _intent(emulator, session, internal, cause)
        decline = (
            setup_intents.setup_decline(stored)
            if session["mode"] == "setup"
            else cards.card_of(stored).decline
        )
        if decline is not None:
            return _decline(emulator, session, intent, stored, decline, cause)
        if cards.needs_authentication(stored, off_session=False):
            base_url = session["url"]
            next_action = {
                "type": "redirect_to_url",
                "redirect_to_url": {"url": f"{base_url}/authenticate", "return_url": base_url},
            }
            setup_intents.await_authentication(emulator, intent, next_action, cause)
            internal["awaiting_authentication"] = stored.data["id"]
            emulator.store.update(session, internal=internal)
            return PaymentResult("requires_action")
        _succeed(emulator, session, intent, stored, cause)
        return PaymentResult("succeeded")


def finish_authentication(
    emulator: Emulator, session_id: str, *, authenticated: bool, cause: Cause
) -> PaymentResult:
    """The second page of a 3-D Secure card: complete pays (or saves), fail declines and reopens."""
    with emulator.store.transaction():
        session, internal = _open_session(emulator, session_id)
        payment_method_id = internal.pop("awaiting_authentication", None)
        if payment_method_id is None:
            raise StripeError("This Checkout Session has no payment awaiting authentication.")
        emulator.store.update(session, internal=internal)
        stored = emulator.load("payment_method", payment_method_id, param="session")
        intent = _intent(emulator, session, internal, cause)
        if not authenticated:
            failure = (
                setup_intents.AUTHENTICATION_FAILED
                if session["mode"] == "setup"
                else cards.AUTHENTICATION_FAILED
            )
            return _decline(emulator, session, intent, stored, failure, cause)
        _succeed(emulator, session, intent, stored, cause)
        return PaymentResult("succeeded")


def _succeed(
    emulator: Emulator, session: JSON, intent: JSON, stored: StoredObject, cause: Cause
) -> None:
    billing = stored.data["billing_details"]
    email, postal_code = billing["email"], billing["address"]["postal_code"]
    if session["mode"] == "setup":
        setup_intents.succeed(emulator, intent, stored, cause)
        _complete_session(
            emulator,
            session,
            email=email,
            postal_code=postal_code,
            payment_status="no_payment_required",
            cause=cause,
        )
        return
    cards.charge(emulator, intent, stored.data, None, parent=session["id"], cause=cause)
    if intent["setup_future_usage"] is not None and session["customer"] is not None:
        cards.attach(emulator, stored, session["customer"], cause)
        if intent["setup_future_usage"] == "off_session":
            cards.mark_set_up(emulator, stored)
    _complete_session(
        emulator, session, email=email, postal_code=postal_code, payment_status="paid", cause=cause
    )


def _decline(
    emulator: Emulator,
    session: JSON,
    intent: JSON,
    stored: StoredObject,
    decline: Decline,
    cause: Cause,
) -> PaymentResult:
    if session["mode"] == "setup":
        setup_intents.fail(emulator, intent, stored.data, decline, cause)
    else:
        cards.charge(emulator, intent, stored.data, decline, parent=session["id"], cause=cause)
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
            billing=objects.billing_details(
                email=account.email, postal_code=account.postal_code, name=None
            ),
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
            emulator,
            session,
            email=account.email,
            postal_code=account.postal_code,
            payment_status="unpaid",
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
