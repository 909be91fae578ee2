"""Checkout carries a cart line's machine image through the order line to the instances, whose
machines are launched with it (the live platform, its worker and the Stripe emulator)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances.models import Instance, SimulatedMachine
from tests.support.shopper import Shopper

JAX = "jax-0.5-cuda-12.6"


async def machine_of(engine: AsyncEngine, instance_id: str) -> SimulatedMachine:
    """The simulated provider's machine of an instance, once the worker has launched it."""
    deadline = time.monotonic() + 30
    while True:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            provider_id = await db.scalar(
                select(Instance.provider_id).where(Instance.id == uuid.UUID(instance_id))
            )
            machine = None if provider_id is None else await db.get(SimulatedMachine, provider_id)
        if machine is not None or time.monotonic() > deadline:
            assert machine is not None, "never launched"
            return machine
        await asyncio.sleep(0.2)


async def test_an_order_lines_instances_are_installed_with_its_image(
    http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    shopper = await Shopper(http).sign_up()
    order_id, _ = await shopper.buy(quantity=2, image=JAX)
    order = await shopper.wait_until(order_id, lambda o: len(o["instances"]) == 2)
    assert [line["image_slug"] for line in order["lines"]] == [JAX]
    assert len(order["instances"]) == 2, order
    for instance in order["instances"]:
        assert instance["image"]["slug"] == JAX
        answer = await http.get(f"/api/v1/instances/{instance['id']}", headers=shopper.auth)
        assert answer.json()["image"]["name"] == "JAX"
        machine = await machine_of(engine, instance["id"])
        assert machine.image_slug == JAX
        assert machine.image_versions == ["Ubuntu 24.04", "CUDA 12.6", "Python 3.12", "JAX 0.5.0"]
