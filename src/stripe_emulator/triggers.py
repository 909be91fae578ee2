"""`stripe-emulator trigger EVENT_TYPE [--for cs_…]`: cause an event the way it really happens,
by running the same flow the hosted page or the API would, like the Stripe CLI's fixtures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from stripe_emulator import checkout, customers, payments, refunds
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError
from stripe_emulator.forms import Params
from stripe_emulator.store import JSON

TEST_EMAIL = "customer@example.com"


def _card(number: str) -> payments.CardInput:
    next_year = dt.datetime.now(dt.UTC).year + 1
    return payments.CardInput(number, 12, next_year, "10001", TEST_EMAIL)


def _pay_with_card(number: str) -> Callable[[Emulator, str, Cause], None]:
    def pay(emulator: Emulator, session_id: str, cause: Cause) -> None:
        payments.pay_with_card(emulator, session_id, _card(number), cause)

    return pay


def _pay_and_settle(account_number: str) -> Callable[[Emulator, str, Cause], None]:
    def pay(emulator: Emulator, session_id: str, cause: Cause) -> None:
        account = payments.BankAccountInput(account_number, "10001", TEST_EMAIL)
        payments.pay_with_bank_account(emulator, session_id, account, cause)
        payments.settle_bank_payment(emulator, session_id, cause)

    return pay


def _paid(then: Callable[[Emulator, str, Cause], object]) -> Callable[[Emulator, str, Cause], None]:
    """Pay the session with a card first if it is still open, then do `then`."""

    def act(emulator: Emulator, session_id: str, cause: Cause) -> None:
        session = emulator.load("checkout.session", session_id, param="for").data
        if session["status"] == "open":
            _pay_with_card("4242424242424242")(emulator, session_id, cause)
        then(emulator, session_id, cause)

    return act


def _refund(emulator: Emulator, session_id: str, cause: Cause) -> None:
    session = emulator.load("checkout.session", session_id, param="for").data
    charge = payments.succeeded_charge(emulator, session)
    refunds.create_refund(emulator, Params({"charge": charge["id"]}), cause)


def _expire(emulator: Emulator, session_id: str, cause: Cause) -> None:
    checkout.expire_session(emulator, session_id, cause)


SCENARIOS: dict[str, Callable[[Emulator, str, Cause], None]] = {
    "checkout.session.completed": _pay_with_card("4242424242424242"),
    "payment_intent.created": _pay_with_card("4242424242424242"),
    "payment_intent.succeeded": _pay_with_card("4242424242424242"),
    "charge.succeeded": _pay_with_card("4242424242424242"),
    "payment_intent.payment_failed": _pay_with_card("4000000000000002"),
    "charge.failed": _pay_with_card("4000000000000002"),
    "checkout.session.expired": _expire,
    "checkout.session.async_payment_succeeded": _pay_and_settle(payments.BANK_ACCOUNT_SUCCEEDS),
    "checkout.session.async_payment_failed": _pay_and_settle(payments.BANK_ACCOUNT_FAILS),
    "charge.refunded": _paid(_refund),
    "refund.created": _paid(_refund),
    "charge.dispute.created": _paid(payments.dispute_payment),
    # On a setup-mode session (the hosted page saves the card instead of paying).
    "setup_intent.created": _pay_with_card("4242424242424242"),
    "setup_intent.succeeded": _pay_with_card("4242424242424242"),
    "payment_method.attached": _pay_with_card("4242424242424242"),
    "setup_intent.setup_failed": _pay_with_card("4000000000000002"),
}
SETUP_EVENTS = frozenset(
    {
        "setup_intent.created",
        "setup_intent.succeeded",
        "payment_method.attached",
        "setup_intent.setup_failed",
    }
)


def _fixture_session(emulator: Emulator, base_url: str, cause: Cause, *, setup: bool) -> JSON:
    """A USD 20.00 payment session, or a setup-mode one for a new customer."""
    common = {
        "success_url": "https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://example.com/cancel",
        "metadata": {"created_by": "stripe-emulator trigger"},
    }
    if setup:
        customer = customers.create_customer(emulator, Params({"email": TEST_EMAIL}), cause)
        specific: JSON = {"mode": "setup", "currency": "usd", "customer": customer["id"]}
    else:
        specific = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": "1",
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": "2000",
                        "product_data": {"name": "Triggered test item"},
                    },
                }
            ],
        }
    return checkout.create_session(emulator, Params({**common, **specific}), cause, base_url)


def trigger(
    emulator: Emulator, event_type: str, session_id: str | None, base_url: str
) -> tuple[str, list[str]]:
    """Run the scenario for `event_type`; returns the session used and the events emitted."""
    scenario = SCENARIOS.get(event_type)
    if scenario is None:
        raise StripeError(
            f"Cannot trigger {event_type!r}; supported: {', '.join(sorted(SCENARIOS))}.",
            param="event",
        )
    cause = Cause()
    with emulator.store.transaction():
        if session_id is None:
            fixture = _fixture_session(emulator, base_url, cause, setup=event_type in SETUP_EVENTS)
            session_id = fixture["id"]
        scenario(emulator, session_id, cause)
    return session_id, cause.emitted
