"""One lock for a cart, the user's row: a line added while a checkout reads the cart waits for
that checkout to finish, so the order is exactly the cart it read; and one added while a payment
takes the bought lines out of the cart waits for it, instead of failing on a deleted line."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text

from computebill.auth.models import User
from computebill.cart import service as cart
from computebill.catalog.service import Catalog, load_catalog, validate_configuration
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.devserver.scratch import Sessions
from computebill.orders.models import OrderLine
from computebill.payments import checkout

H100: dict[str, Any] = {
    "gpu": "nvidia-h100",
    "gpu_count": 2,
    "vcpus": 24,
    "storage_gb": 500,
    "hours": 10,
}
A100: dict[str, Any] = {
    "gpu": "nvidia-a100",
    "gpu_count": 1,
    "vcpus": 12,
    "storage_gb": 500,
    "hours": 5,
}


H100_LINE: dict[str, Any] = {**H100, "region": None, "quantity": 1}


async def _user_with_a_line(sessions: Sessions, line: dict[str, Any]) -> tuple[User, Catalog]:
    """A new user whose cart holds `line`, committed; and the catalog it was priced from."""
    async with unit_of_work(sessions) as db:
        user = User(
            email=f"cart-lock-{secrets.token_hex(4)}@example.com",
            password_changed_at=datetime.now(UTC),
            email_verified_at=datetime.now(UTC),
        )
        db.add(user)
        await db.flush()
        catalog = await load_catalog(db)
        valid = validate_configuration(catalog, **line)
        await cart.add_item(db, user_id=user.id, catalog=catalog, valid=valid)
    return user, catalog


WAITING_ON_A_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def test_adding_a_line_waits_while_a_checkout_holds_the_cart(settings: Settings) -> None:
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    try:
        now = datetime.now(UTC)
        user, catalog = await _user_with_a_line(sessions, H100_LINE)
        second = validate_configuration(catalog, **A100, region=None, quantity=1)

        async def add_second() -> None:
            async with unit_of_work(sessions) as db:
                await cart.add_item(db, user_id=user.id, catalog=catalog, valid=second)

        # A checkout of this cart is retried (the same key): it holds the cart's lock while it
        # reads the cart, though it writes nothing this time.
        async with unit_of_work(sessions) as db:
            prepared = await checkout.prepare_checkout(
                db, user_id=user.id, catalog=catalog, idempotency_key="retried", now=now
            )
        async with sessions() as checking_out:
            retried = await checkout.prepare_checkout(
                checking_out, user_id=user.id, catalog=catalog, idempotency_key="retried", now=now
            )
            assert retried.reused
            adding = asyncio.create_task(add_second())
            deadline = time.monotonic() + 10
            async with sessions() as watcher:
                while not await watcher.scalar(WAITING_ON_A_LOCK):
                    assert not adding.done(), "the line was added while the cart was checked out"
                    assert time.monotonic() < deadline, "the add never waited on the cart lock"
                    await asyncio.sleep(0.05)
                    await watcher.rollback()  # a fresh snapshot of pg_stat_activity
            assert not adding.done()
            await checking_out.commit()
        await asyncio.wait_for(adding, timeout=10)

        async with sessions() as db:
            lines = await db.scalar(
                select(func.count()).where(OrderLine.order_id == prepared.order.id)
            )
            in_cart = await cart.priced_cart(db, user_id=user.id, catalog=catalog)
        assert lines == 1  # the order is the cart checkout read
        assert len(in_cart.lines) == 2  # and the line added afterwards is in the cart
    finally:
        await engine.dispose()


async def test_adding_a_bought_configuration_while_its_payment_empties_the_cart_succeeds(
    settings: Settings,
) -> None:
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    try:
        user, catalog = await _user_with_a_line(sessions, H100_LINE)
        bought = validate_configuration(catalog, **H100_LINE)

        async def add_again() -> None:
            async with unit_of_work(sessions) as db:
                await cart.add_item(db, user_id=user.id, catalog=catalog, valid=bought)

        line = cart.Purchased(
            bought.model.id,
            H100["gpu_count"],
            H100["vcpus"],
            H100["storage_gb"],
            H100["hours"],
            bought.region,
        )
        async with sessions() as paying:  # fulfilment, between taking the lines and committing
            await cart.remove_purchased(paying, user_id=user.id, purchased=[line])
            adding = asyncio.create_task(add_again())
            deadline = time.monotonic() + 10
            async with sessions() as watcher:
                while not await watcher.scalar(WAITING_ON_A_LOCK):
                    assert not adding.done(), "the add did not wait for the payment"
                    assert time.monotonic() < deadline, "the add never waited on the cart lock"
                    await asyncio.sleep(0.05)
                    await watcher.rollback()
            await paying.commit()
        await asyncio.wait_for(adding, timeout=10)

        async with sessions() as db:
            in_cart = await cart.priced_cart(db, user_id=user.id, catalog=catalog)
        assert [entry.item.quantity for entry in in_cart.lines] == [1]  # a line of its own
    finally:
        await engine.dispose()
