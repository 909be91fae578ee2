"""Builders of Stripe-shaped objects (API 2023-08-16 schema plus the SDK 16 fields we fill).

Fields the 2023 schema requires but the emulator has no use for get their neutral value; fields
the 2023 schema still lists and SDK 16 dropped are sent as null (see the field diff in
shared/stripe). Amounts are integer minor units, times Unix seconds (UTC).
"""

from __future__ import annotations

from typing import Any

from stripe_emulator.store import JSON

CARD_FACTS = (
    "brand",
    "checks",
    "country",
    "exp_month",
    "exp_year",
    "fingerprint",
    "funding",
    "last4",
)


def list_object(url: str, data: list[JSON], has_more: bool) -> JSON:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def customer(
    *,
    customer_id: str,
    created: int,
    email: str | None,
    name: str | None,
    description: str | None,
    phone: str | None,
    metadata: dict[str, str],
) -> JSON:
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "invoice_prefix": customer_id[4:12].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": metadata,
        "name": name,
        "next_invoice_sequence": 1,
        "phone": phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def product(
    *,
    product_id: str,
    created: int,
    name: str,
    description: str | None,
    metadata: dict[str, str],
) -> JSON:
    return {
        "id": product_id,
        "object": "product",
        "active": True,
        "created": created,
        "default_price": None,
        "description": description,
        "features": [],
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": metadata,
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": created,
        "url": None,
    }


def price(*, price_id: str, created: int, currency: str, unit_amount: int, product_id: str) -> JSON:
    return {
        "id": price_id,
        "object": "price",
        "active": False,  # an inline `price_data` price cannot be reused
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": product_id,
        "recurring": None,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def line_item(*, item_id: str, price_object: JSON, description: str, quantity: int) -> JSON:
    amount = price_object["unit_amount"] * quantity
    return {
        "id": item_id,
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": price_object["currency"],
        "description": description,
        "price": price_object,
        "quantity": quantity,
    }


def checkout_session(
    *,
    session_id: str,
    created: int,
    expires_at: int,
    currency: str | None,
    amount_total: int | None,
    url: str,
    success_url: str,
    cancel_url: str | None,
    client_reference_id: str | None,
    customer_id: str | None,
    customer_email: str | None,
    metadata: dict[str, str],
) -> JSON:
    return {
        "id": session_id,
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "status": None},
        "billing_address_collection": None,
        "cancel_url": cancel_url,
        "client_reference_id": client_reference_id,
        "client_secret": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {"shipping_address": None, "submit": None},
        "customer": customer_id,
        "customer_creation": None if customer_id else "if_required",
        "customer_details": None,
        "customer_email": customer_email,
        "expires_at": expires_at,
        "invoice": None,
        "invoice_creation": None,
        "livemode": False,
        "locale": None,
        "metadata": metadata,
        "mode": "payment",
        "payment_intent": None,  # created when the customer first tries to pay
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_options": {},
        "payment_method_types": ["card", "us_bank_account"],
        "payment_status": "unpaid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_details": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": success_url,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": url,
    }


def payment_intent(
    *,
    intent_id: str,
    created: int,
    amount: int,
    currency: str,
    customer_id: str | None,
    metadata: dict[str, str],
) -> JSON:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_{intent_id[3:]}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer_id,
        "description": None,
        "invoice": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_options": {},
        "payment_method_types": ["card", "us_bank_account"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }


def card_details(card: JSON) -> JSON:
    """`payment_method_details` of a card charge, from its PaymentMethod's `card`."""
    facts = {key: card[key] for key in CARD_FACTS}
    return {
        "type": "card",
        "card": {
            **facts,
            "installments": None,
            "mandate": None,
            "network": card["brand"],
            "three_d_secure": None,
            "wallet": None,
        },
    }


def bank_account_details(*, last4: str, routing_number: str) -> JSON:
    """`payment_method_details` of a US bank account (ACH debit) charge."""
    return {
        "type": "us_bank_account",
        "us_bank_account": {
            "account_holder_type": "individual",
            "account_type": "checking",
            "bank_name": "STRIPE TEST BANK",
            "fingerprint": None,
            "last4": last4,
            "routing_number": routing_number,
        },
    }


def charge(
    *,
    charge_id: str,
    created: int,
    intent: JSON,
    payment_method_id: str,
    payment_method_details: JSON,
    billing: JSON,
    status: str,
    outcome: JSON,
    failure_code: str | None = None,
    failure_message: str | None = None,
) -> JSON:
    succeeded = status == "succeeded"
    return {
        "id": charge_id,
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"] if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": billing,
        "calculated_statement_descriptor": "STRIPE EMULATOR",
        "captured": succeeded,
        "created": created,
        "currency": intent["currency"],
        "customer": intent["customer"],
        "description": intent["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "fraud_details": {},
        "invoice": None,
        "livemode": False,
        "metadata": intent["metadata"],
        "on_behalf_of": None,
        "outcome": outcome,
        "paid": succeeded,
        "payment_intent": intent["id"],
        "payment_method": payment_method_id,
        "payment_method_details": payment_method_details,
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "refunds": None,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def outcome(
    *, outcome_type: str, network_status: str, seller_message: str, reason: str | None = None
) -> JSON:
    return {
        "network_status": network_status,
        "reason": reason,
        "risk_level": "normal",
        "risk_score": 20,
        "seller_message": seller_message,
        "type": outcome_type,
    }


def refund(
    *,
    refund_id: str,
    created: int,
    amount: int,
    charge_object: JSON,
    reason: str | None,
    metadata: dict[str, str],
) -> JSON:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": charge_object["id"],
        "created": created,
        "currency": charge_object["currency"],
        "customer": charge_object["customer"],
        "destination_details": None,
        "metadata": metadata,
        "payment_intent": charge_object["payment_intent"],
        "payment_method": charge_object["payment_method"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }


def dispute(*, dispute_id: str, created: int, charge_object: JSON) -> JSON:
    """Not in the schema subset; shaped after Stripe's dispute object's main fields."""
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": charge_object["amount"],
        "balance_transactions": [],
        "charge": charge_object["id"],
        "created": created,
        "currency": charge_object["currency"],
        "evidence_details": {
            "due_by": created + 7 * 24 * 3600,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge_object["payment_intent"],
        "reason": "fraudulent",
        "status": "needs_response",
    }


def event(
    *,
    event_id: str,
    created: int,
    event_type: str,
    data_object: JSON,
    api_version: str,
    pending_webhooks: int,
    request_id: str | None,
    idempotency_key: str | None,
    previous_attributes: dict[str, Any] | None = None,
) -> JSON:
    data: JSON = {"object": data_object}
    if previous_attributes:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": pending_webhooks,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }


def billing_details(*, email: str | None, postal_code: str | None, name: str | None) -> JSON:
    return {
        "address": {
            "city": None,
            "country": None,
            "line1": None,
            "line2": None,
            "postal_code": postal_code,
            "state": None,
        },
        "email": email,
        "name": name,
        "phone": None,
    }


def card_payment_method(
    *,
    payment_method_id: str,
    created: int,
    card: JSON,
    billing: JSON,
    metadata: dict[str, str],
) -> JSON:
    """A `type=card` PaymentMethod; `card` is `card_facts()`."""
    return {
        "id": payment_method_id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": billing,
        "card": {
            **card,
            "display_brand": card["brand"],
            "generated_from": None,
            "networks": {"available": [card["brand"]], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": created,
        "customer": None,
        "livemode": False,
        "metadata": metadata,
        "radar_options": {},
        "type": "card",
    }


def card_facts(
    *,
    brand: str,
    last4: str,
    exp_month: int,
    exp_year: int,
    fingerprint: str,
    funding: str,
    country: str,
) -> JSON:
    """What a card PaymentMethod and a card charge's details share."""
    return {
        "brand": brand,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": "pass",
            "cvc_check": "pass",
        },
        "country": country,
        "exp_month": exp_month,
        "exp_year": exp_year,
        "fingerprint": fingerprint,
        "funding": funding,
        "last4": last4,
    }


def setup_intent(
    *,
    intent_id: str,
    created: int,
    customer_id: str | None,
    usage: str,
    description: str | None,
    metadata: dict[str, str],
) -> JSON:
    return {
        "id": intent_id,
        "object": "setup_intent",
        "application": None,
        "attach_to_self": False,
        "automatic_payment_methods": None,
        "cancellation_reason": None,
        "client_secret": f"{intent_id}_secret_{intent_id[5:]}",
        "created": created,
        "customer": customer_id,
        "description": description,
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "single_use_mandate": None,
        "status": "requires_payment_method",
        "usage": usage,
    }
