"""Customers: created and updated by the API, referenced by Checkout Sessions and intents."""

from __future__ import annotations

from stripe_emulator import objects
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError
from stripe_emulator.forms import Params
from stripe_emulator.store import JSON, new_id

CREATE_PARAMS = {"email", "name", "description", "phone", "metadata", "expand"}
UPDATE_PARAMS = CREATE_PARAMS | {"invoice_settings"}


def create_customer(emulator: Emulator, params: Params, cause: Cause) -> JSON:
    params.reject_unknown(CREATE_PARAMS)
    customer = objects.customer(
        customer_id=new_id("cus_", 14),
        created=emulator.now(),
        email=params.string("email"),
        name=params.string("name"),
        description=params.string("description"),
        phone=params.string("phone"),
        metadata=params.metadata("metadata"),
    )
    with emulator.store.transaction():
        emulator.store.insert(customer)
        emulator.emit("customer.created", customer, cause)
    return customer


def update_customer(emulator: Emulator, customer_id: str, params: Params, cause: Cause) -> JSON:
    """`POST /v1/customers/{id}`: contact fields, metadata (merged; "" deletes a key) and
    `invoice_settings[default_payment_method]`, which must be attached to this customer."""
    params.reject_unknown(UPDATE_PARAMS)
    with emulator.store.transaction():
        customer = emulator.load("customer", customer_id, param="customer").data
        previous: JSON = {}
        for field in ("email", "name", "description", "phone"):
            if field in params.values:
                value = params.string(field)
                if value != customer[field]:
                    previous[field] = customer[field]
                    customer[field] = value
        raw_metadata = params.values.get("metadata")
        if raw_metadata == "" and customer["metadata"]:
            previous["metadata"] = customer["metadata"]
            customer["metadata"] = {}
        elif raw_metadata is not None:
            changes = params.metadata("metadata")
            removed = {key for key, value in raw_metadata.items() if value == ""}
            merged = {
                key: value
                for key, value in {**customer["metadata"], **changes}.items()
                if key not in removed
            }
            old = customer["metadata"]
            changed = {key for key in {*old, *merged} if old.get(key) != merged.get(key)}
            if changed:
                # As Stripe: the changed keys' old values, null for keys that are new.
                previous["metadata"] = {key: old.get(key) for key in sorted(changed)}
                customer["metadata"] = merged
        settings = params.nested("invoice_settings")
        if settings is not None:
            settings.reject_unknown({"default_payment_method"})
            default = settings.string("default_payment_method")
            if default is not None:
                _check_attached(
                    emulator, customer_id, default, settings.name("default_payment_method")
                )
            current = customer["invoice_settings"]["default_payment_method"]
            if "default_payment_method" in settings.values and default != current:
                previous["invoice_settings"] = {"default_payment_method": current}
                customer["invoice_settings"]["default_payment_method"] = default
        if previous:
            emulator.store.update(customer)
            emulator.emit("customer.updated", customer, cause, previous_attributes=previous)
    return customer


def _check_attached(
    emulator: Emulator, customer_id: str, payment_method_id: str, param: str
) -> None:
    found = emulator.store.find(payment_method_id, "payment_method")
    if found is None or found.data["customer"] != customer_id:
        raise StripeError(
            f"The customer does not have a payment method with the ID {payment_method_id}. "
            "The payment method must be attached to the customer.",
            code="resource_missing",
            param=param,
        )
