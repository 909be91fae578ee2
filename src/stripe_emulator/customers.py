"""Customers: created by the API and referenced by Checkout Sessions."""

from __future__ import annotations

from stripe_emulator import objects
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.forms import Params
from stripe_emulator.store import JSON, new_id

CREATE_PARAMS = {"email", "name", "description", "phone", "metadata", "expand"}


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
