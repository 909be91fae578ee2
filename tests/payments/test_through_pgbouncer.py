"""The payment path with the app and the worker behind a real PgBouncer in transaction-pooling
mode (`DATABASE_POOLER=pgbouncer-transaction`): sign up, cart, checkout, payment on the
emulator, webhook, order paid, instances running."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from computebill.config import DatabasePooler, Settings
from tests.support.database import own_database
from tests.support.http import AppClient
from tests.support.pgbouncer import PGBOUNCER, pgbouncer
from tests.support.platform import running_platform
from tests.support.shopper import Shopper, pay

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not PGBOUNCER.exists(), reason=f"{PGBOUNCER} is absent (Debian's pgbouncer package)"
    ),
]


async def test_a_card_payment_through_pgbouncer_provisions_the_order(
    settings: Settings, service_urls: tuple[str, str], tmp_path: Path
) -> None:
    async with own_database(settings, service_urls[0]) as own:
        with (
            pgbouncer(str(own.database_url), tmp_path) as bouncer,
            running_platform(
                own,
                tmp_path,
                database_url=bouncer.url,
                database_pooler=DatabasePooler.PGBOUNCER_TRANSACTION,
            ) as platform,
        ):
            async with AppClient(own, base_url=platform.base_url, timeout=30) as http:
                shopper = await Shopper(http).sign_up()
                await shopper.add(quantity=2)
                order_id, checkout_url = await shopper.checkout_url()
                assert (await pay(checkout_url)).status_code == 303

                order = await shopper.wait_for(order_id, "paid")
                assert [h["to_status"] for h in order["history"]] == ["pending", "paid"]
                for _ in range(100):
                    instances = (await shopper.order(order_id))["instances"]
                    if len(instances) == 2 and all(i["status"] == "running" for i in instances):
                        break
                    await asyncio.sleep(0.2)
                assert [i["status"] for i in instances] == ["running"] * 2
                assert (await shopper.cart())["items"] == []

            # Both processes talked to the database only through PgBouncer.
            assert bouncer.log.read_text().count("login attempt") >= 2
            assert "prepared statement" not in platform.log.read_text()
