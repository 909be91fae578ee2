"""Pay as you go on the pages: the configurator's "Pay as you go" (its rate, the launch through
the same service as `POST /api/v1/instances`, too little credit said with how much to add), and
the dashboard's pay-as-you-go instances, their cost ticking with every poll."""

from __future__ import annotations

import uuid
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.credits.models import EntryKind
from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances.models import Billing, Instance, InstanceStatus
from tests.billing.test_billing_pages import RATE, signed_up
from tests.cart.test_cart_pages import CONFIGURATOR, HTMX
from tests.credits.ledger import post
from tests.instances.metering import add_metered
from tests.support.markup import the
from tests.support.pages import PASSWORD, Browser

H100_RATE = 668_000  # millicents an hour: 2 × 249 ¢ + 24 × 5 ¢ + 500 × 0.1 ¢
LAUNCH = "/instances/pay-as-you-go"
H100 = {"gpu": "nvidia-h100", "gpu_count": "2", "vcpus": "24", "storage_gb": "500"}


async def credit(engine: AsyncEngine, user_id: uuid.UUID, millicents: int) -> None:
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, millicents, payment_intent_id=f"pi_{user_id}")


async def instances_of(engine: AsyncEngine, user_id: uuid.UUID) -> list[Instance]:
    async with unit_of_work(create_sessionmaker(engine)) as db:
        return list(await db.scalars(select(Instance).where(Instance.user_id == user_id)))


async def test_the_configurator_offers_pay_as_you_go_at_its_rate(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    page = (await browser.page(CONFIGURATOR)).text
    rate = the(page, "data-pay-as-you-go-rate-millicents")
    assert rate.attrs["data-pay-as-you-go-rate-millicents"] == str(H100_RATE)
    assert rate.text == "$6.68"
    assert the(page, "data-launch-pay-as-you-go").text == "Launch pay as you go"
    assert 'action="/instances/pay-as-you-go"' in page
    # The price box htmx swaps in as the options change carries the rate too.
    price = (await browser.page("/gpus/nvidia-h100/price?gpu_count=1&vcpus=12&storage_gb=500")).text
    assert the(price, "data-pay-as-you-go-rate-millicents")


async def test_a_launch_goes_to_the_dashboard_billed_by_the_second(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await credit(engine, user_id, 10_000_000)
    answer = await browser.submit(LAUNCH, H100 | {"max_hours": "3"}, form_page=CONFIGURATOR)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/dashboard"
    [instance] = await instances_of(engine, user_id)
    assert instance.billing == Billing.PAY_AS_YOU_GO
    assert instance.rate_millicents_per_hour == H100_RATE
    assert instance.max_hours == 3
    assert instance.status is InstanceStatus.PROVISIONING

    dashboard = (await browser.page("/dashboard")).text
    assert "billed by the second" in the(dashboard, "data-billed-by-the-second").text
    row = the(dashboard, "data-instance-row")
    assert row.attrs["data-instance-id"] == str(instance.id)
    assert row.find("span", **{"data-rate-millicents": str(H100_RATE)})


async def test_without_a_safety_stop_and_with_htmx(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await credit(engine, user_id, 10_000_000)
    await browser.page(CONFIGURATOR)
    answer = await browser.http.post(
        LAUNCH,
        data=H100 | {"max_hours": "", "hours": "10"},  # htmx includes the configurator's hours
        headers=HTMX | {"X-CSRF-Token": browser.csrf_token},
    )
    assert answer.status_code == 204
    assert answer.headers["hx-redirect"] == "/dashboard"
    [instance] = await instances_of(engine, user_id)
    assert instance.max_hours is None


async def test_too_little_credit_says_how_much_to_add(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await credit(engine, user_id, 100_000)  # $1: 10 minutes at $6.68 an hour need $1.1134
    answer = await browser.submit(LAUNCH, H100, form_page=CONFIGURATOR)
    assert answer.status_code == 402
    refused = the(answer.text, "data-launch-refused")
    assert refused.attrs["data-shortfall-cents"] == "12"
    assert "Add at least $0.12" in refused.text
    assert refused.find("a", href="/billing")
    assert await instances_of(engine, user_id) == []

    fragment = await browser.http.post(
        LAUNCH, data=H100, headers=HTMX | {"X-CSRF-Token": browser.csrf_token}
    )
    assert fragment.status_code == 200  # htmx swaps the message in beside the button
    assert the(fragment.text, "data-launch-refused").attrs["data-shortfall-cents"] == "12"


async def test_a_bad_option_is_refused_with_its_reason(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await credit(engine, user_id, 10_000_000)
    for bad, words in (
        ({"max_hours": "soon"}, "whole number of hours"),
        ({"gpu_count": "3"}, "gpu_count"),
    ):
        answer = await browser.submit(LAUNCH, H100 | bad, form_page=CONFIGURATOR)
        assert answer.status_code == 422
        assert words in the(answer.text, "data-launch-refused").text
    assert await instances_of(engine, user_id) == []


async def test_a_visitor_who_is_not_signed_in_logs_in_first(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    """Told what for, and back to the configuration afterwards: never launched on the way, a
    launch spends money."""
    user_id = await signed_up(browser, email, engine)
    await credit(engine, user_id, 10_000_000)
    assert (await browser.submit("/logout", form_page="/")).status_code == 303
    answer = await browser.submit(LAUNCH, H100, form_page="/login")
    assert answer.status_code == 303
    back = unquote(answer.headers["location"])
    assert back == "/login?next=/gpus/nvidia-h100?gpu_count=2&vcpus=24&storage_gb=500"
    login = (await browser.page(answer.headers["location"])).text
    assert the(login, "data-login-reason").text == (
        "Log in to launch 2 × NVIDIA H100 SXM pay as you go."
    )
    next_page = back.removeprefix("/login?next=")
    signed_in = await browser.submit(
        "/login",
        {"email": email, "password": PASSWORD, "next": next_page},
        form_page=answer.headers["location"],
    )
    assert signed_in.headers["location"] == next_page
    assert await instances_of(engine, user_id) == []


async def test_the_dashboard_ticks_a_running_instances_cost_and_the_balance(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await credit(engine, user_id, 10_000_000)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await add_metered(db, user_id, rate=RATE, started_at=browser.clock.now())
    browser.clock.advance(seconds=100)
    page = (await browser.page("/dashboard")).text
    assert 'hx-trigger="every 3s"' in page  # it runs: the list polls
    assert the(page, "data-cost-cents").attrs["data-cost-cents"] == "100"
    browser.clock.advance(seconds=150)
    polled = (await browser.page("/dashboard/instances")).text
    assert the(polled, "data-cost-cents").attrs["data-cost-cents"] == "250"
    header = the(polled, "data-header-balance")
    assert header.attrs["hx-swap-oob"] == "true"
    assert header.attrs["data-header-balance"] == str((10_000_000 - 250_000) // 1000)


async def test_terminating_pay_as_you_go_says_billing_stops_and_the_disk_is_erased(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await credit(engine, user_id, 10_000_000)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        instance = await add_metered(db, user_id, rate=RATE, started_at=browser.clock.now())
    browser.clock.advance(seconds=100)
    path = f"/dashboard/instances/{instance.id}/terminate"
    page = (await browser.page("/dashboard")).text
    [button] = the(page, "data-instance-row").find("button", id=f"terminate-{instance.id}")
    assert button["aria-label"] == f"Terminate {instance.name}"

    confirm = (await browser.page(path)).text
    assert f"Terminate {instance.name}?" in the(confirm, "data-terminate-panel").text
    assert "its disk is erased" in the(confirm, "data-terminate-data").text
    money = the(confirm, "data-terminate-money")
    assert money.attrs["data-terminate-money"] == "pay_as_you_go"
    assert "Billing stops now. It is charged by the second" in money.text
    assert "$1.00 so far at $36.00/hour" in money.text

    answer = await browser.submit(path, form_page=path)
    assert answer.status_code == 303
    [stopped] = await instances_of(engine, user_id)
    assert stopped.status is InstanceStatus.STOPPING
    assert stopped.run_ended_at == browser.clock.now()
