"""The Extend page: the price of the hours asked for, from the server, before paying; from
credit (refused with the shortfall when there is too little) or by card through Stripe's page,
after which the dashboard shows the same machine's new stop time. Nobody else's machine."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select

from computebill.auth.models import User
from computebill.config import Settings
from computebill.db import unit_of_work
from computebill.devserver.scratch import database
from computebill.instances import service as instances
from computebill.instances.models import Instance
from computebill.jobs import take_requested_jobs
from computebill.orders.models import OrderLine
from tests.payments.extensions import HOURLY_CENTS, NOW, running_instance
from tests.support.markup import the
from tests.support.pages import Browser
from tests.support.shopper import pay


async def test_the_extend_page_prices_then_pays_by_card_for_the_same_machine(
    shop_browser: Browser, other_browser: Browser, email: str, settings: Settings
) -> None:
    await shop_browser.sign_up(email)
    async with database(settings) as sessions:
        async with unit_of_work(sessions) as db:
            user_id = await db.scalar(select(User.id).where(User.email == email))
            assert user_id is not None
            machine = await running_instance(db, user_id, hours=2)
        extend = f"/dashboard/instances/{machine.id}/extend"

        dashboard = await shop_browser.page("/dashboard")
        assert the(dashboard.text, "data-extend-link").attrs["href"] == extend
        page = await shop_browser.page(f"{extend}?hours=3")
        assert page.status_code == 200
        price = the(page.text, "data-extend-price-cents")
        assert price.attrs["data-extend-price-cents"] == str(3 * HOURLY_CENTS)
        assert price.text == "$20.04"
        assert (
            the(page.text, "data-stops-at").text == f"{NOW + timedelta(hours=2):%Y-%m-%d %H:%M} UTC"
        )
        bad = await shop_browser.page(f"{extend}?hours=0")
        assert "hours 0 is not offered" in the(bad.text, "data-extend-refusal").text

        # No credit: refused on the page, with what is missing; nothing moves.
        broke = await shop_browser.submit(
            extend, {"hours": "3", "pay_with": "credits"}, form_page=f"{extend}?hours=3"
        )
        assert broke.status_code == 402
        assert "add at least 2004 cents" in the(broke.text, "data-extend-error").text

        # By card: on to Stripe's page, back to the order's success page, which confirms it.
        answer = await shop_browser.submit(
            extend, {"hours": "3", "pay_with": "card"}, form_page=f"{extend}?hours=3"
        )
        assert answer.status_code == 303, answer.text
        paid = await pay(answer.headers["location"])
        assert paid.status_code == 303
        back = urlsplit(paid.headers["location"])
        success = await shop_browser.page(f"{back.path}?{back.query}")
        assert success.status_code == 200
        assert f"Extend {machine.name}: 3 h of 2 × NVIDIA H100 SXM" in success.text
        assert "new stop time shows on your dashboard" in success.text
        async with unit_of_work(sessions) as db:  # the worker's provisioning job
            order_id = await db.scalar(
                select(OrderLine.order_id).where(OrderLine.extends_instance_id == machine.id)
            )
            assert order_id is not None
            await instances.create_instances(db, order_id, now=NOW)
            take_requested_jobs(db)
            extended = await db.get(Instance, machine.id)
            assert extended is not None
            assert extended.expires_at == NOW + timedelta(hours=5)
        dashboard = await shop_browser.page("/dashboard")
        assert f"{NOW + timedelta(hours=5):%Y-%m-%d %H:%M} UTC" in dashboard.text

    await other_browser.sign_up("other-" + email)
    assert (await other_browser.page(extend)).status_code == 404
    theirs = await other_browser.submit(
        extend, {"hours": "1", "pay_with": "credits"}, form_page="/dashboard"
    )
    assert theirs.status_code == 404
    assert (
        await other_browser.page(f"/dashboard/instances/{uuid.uuid4()}/extend")
    ).status_code == 404
