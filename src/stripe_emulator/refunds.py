"""Refunds of a successful charge, whole or partial, never beyond what is left."""

from __future__ import annotations

from stripe_emulator import objects
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError, invalid_param
from stripe_emulator.forms import Params
from stripe_emulator.money import format_amount
from stripe_emulator.store import JSON, new_id

CREATE_PARAMS = {"payment_intent", "charge", "amount", "reason", "metadata", "expand"}
REASONS = {"duplicate", "fraudulent", "requested_by_customer"}


def create_refund(emulator: Emulator, params: Params, cause: Cause) -> JSON:
    params.reject_unknown(CREATE_PARAMS)
    intent_id = params.string("payment_intent")
    charge_id = params.string("charge")
    amount = params.integer("amount", minimum=1)
    reason = params.string("reason")
    if reason is not None and reason not in REASONS:
        raise invalid_param(
            "reason", f"Invalid reason: must be one of {', '.join(sorted(REASONS))}"
        )
    with emulator.store.transaction():
        if intent_id is not None:
            intent = emulator.load("payment_intent", intent_id, param="payment_intent").data
            if intent["latest_charge"] is None or intent["status"] != "succeeded":
                raise StripeError(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge "
                    "to refund.",
                    param="payment_intent",
                )
            if charge_id is not None and charge_id != intent["latest_charge"]:
                raise invalid_param("charge", "The charge does not belong to this PaymentIntent.")
            charge_id = intent["latest_charge"]
        if charge_id is None:
            raise StripeError(
                "One of the following params should be provided for this request: "
                "payment_intent or charge."
            )
        charge = emulator.load("charge", charge_id, param="charge").data
        if charge["status"] != "succeeded":
            raise StripeError(f"Charge {charge_id} has not succeeded.", param="charge")
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining == 0:
            raise StripeError(
                f"Charge {charge_id} has already been refunded.", code="charge_already_refunded"
            )
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise StripeError(
                f"Refund amount ({format_amount(amount, charge['currency'])}) is greater than "
                f"unrefunded amount on charge ({format_amount(remaining, charge['currency'])})",
                code="amount_too_large",
                param="amount",
            )
        refund = objects.refund(
            refund_id=new_id("re_"),
            created=emulator.now(),
            amount=amount,
            charge_object=charge,
            reason=reason,
            metadata=params.metadata("metadata"),
        )
        emulator.store.insert(refund, parent=charge_id)
        emulator.emit("refund.created", refund, cause)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        emulator.store.update(charge)
        emulator.emit("charge.refunded", charge, cause, previous_attributes=previous)
    return refund
