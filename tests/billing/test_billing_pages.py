"""The billing page: the live balance (ticking while instances run, polled), burn rate, runway,
grants, the ledger a page at a time and the daily-spend chart of a seeded account; the header's
balance on every page; and the banner when the credit cap stopped the customer's instances."""

from __future__ import annotations

import uuid
from datetime import UTC, date, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.auth.models import User
from computebill.billing.pages import CHART_HEIGHT, spend_chart
from computebill.billing.service import DaySpend
from computebill.credits.models import EntryKind
from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances import metering
from computebill.instances.service import stop_for_credit
from computebill.jobs import take_requested_jobs
from tests.credits.ledger import grant, post
from tests.instances.metering import add_metered
from tests.support.markup import elements, the
from tests.support.pages import Browser

POLLING = 'hx-trigger="every 5s"'
RATE = 3_600_000  # millicents an hour: $36, a cent a second


async def signed_up(browser: Browser, email: str, engine: AsyncEngine) -> uuid.UUID:
    await browser.sign_up(email)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        user_id = await db.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


async def stopped_for_credit(
    browser: Browser, engine: AsyncEngine, user_id: uuid.UUID, *, credit: int, ran: int
) -> None:
    """`credit` millicents topped up, an instance at RATE run `ran` seconds on it, then stopped
    by the credit cap (the stop jobs it asks for are dropped: the machines are not the point)."""
    sessions = create_sessionmaker(engine)
    started = browser.clock.now()
    async with unit_of_work(sessions) as db:
        await post(db, user_id, EntryKind.TOP_UP, credit, payment_intent_id=f"pi_{uuid.uuid4()}")
        await add_metered(db, user_id, rate=RATE, started_at=started)
    browser.clock.advance(seconds=ran)
    async with unit_of_work(sessions) as db:
        assert await stop_for_credit(db, [user_id], now=browser.clock.now()) == 1
        take_requested_jobs(db)


async def top_up(browser: Browser, engine: AsyncEngine, user_id: uuid.UUID, amount: int) -> None:
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(
            db,
            user_id,
            EntryKind.TOP_UP,
            amount,
            payment_intent_id=f"pi_{uuid.uuid4()}",
            now=browser.clock.now(),
        )


def header_balance(page: str) -> int:
    return int(the(page, "data-header-balance").attrs["data-header-balance"] or "")


async def test_anonymous_visitors_are_sent_to_log_in(browser: Browser) -> None:
    for path in ("/billing", "/billing/balance"):
        answer = await browser.page(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=/billing"
    home = (await browser.page("/")).text
    assert elements(home, "data-header-balance") == []


async def test_the_page_shows_balance_burn_runway_grants_ledger_and_chart(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    now = browser.clock.now()
    yesterday = now - timedelta(days=1)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, 25_000_000, payment_intent_id="pi_b", now=now)
        await grant(db, user_id, 500_000, expires_at=now + timedelta(days=7), now=now)
        await post(db, user_id, EntryKind.USAGE, -1_234_567, now=yesterday)
        await add_metered(db, user_id, rate=RATE, started_at=now)
    browser.clock.advance(seconds=100.5)

    page = (await browser.page("/billing")).text
    live = 25_000_000 + 500_000 - 1_234_567 - metering.owed_millicents(RATE, 100)
    box = the(page, "data-billing-balance")
    assert box.attrs["hx-trigger"] == "every 5s"  # something burns: the figures tick
    assert (
        the(page, "data-balance-cents").text == f"${live // 1000 // 100:,}.{live // 1000 % 100:02d}"
    )
    assert header_balance(page) == live // 1000  # the header agrees with the page
    assert the(page, "data-burn-millicents").text == "$36.00/hour"
    runway = the(page, "data-runway")
    assert runway.attrs["data-runway"] == "good"
    seconds = live * 3600 // RATE
    assert runway.attrs["data-runway-seconds"] == str(seconds)
    assert (
        runway.text
        == f"Lasts {seconds // 3600} h {seconds % 3600 // 60:02d} min at the current rate."
    )

    [left] = elements(page, "data-grant")
    assert left.attrs["data-remaining-millicents"] == "500000"
    assert "$5.00" in left.text

    kinds = [entry.attrs["data-entry-kind"] for entry in elements(page, "data-entry")]
    assert kinds == ["grant", "top_up", "usage"] or kinds == ["top_up", "grant", "usage"]
    [usage] = [e for e in elements(page, "data-entry") if e.attrs["data-entry-kind"] == "usage"]
    assert "Usage" in usage.text
    assert "-$12.34567" in usage.text

    chart = the(page, "data-spend-chart")
    bars = chart.find("rect")
    assert len(bars) == 30
    spent = {bar["data-bar"]: int(bar["data-bar-cents"] or "") for bar in bars}
    assert spent[yesterday.astimezone(UTC).date().isoformat()] == 1_235  # half up, to the cent
    assert sum(spent.values()) == 1_235
    assert "$12.35 in all" in (chart.attrs["aria-label"] or "")
    table = the(page, "data-spend-table")
    assert "$12.35" in table.text


async def test_the_polled_balance_ticks_and_brings_the_header_along(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, 10_000_000, payment_intent_id="pi_p")
        await add_metered(db, user_id, rate=RATE, started_at=browser.clock.now())
    browser.clock.advance(seconds=10)
    first = (await browser.page("/billing/balance")).text
    browser.clock.advance(seconds=250)
    later = await browser.page("/billing/balance")
    assert later.headers["cache-control"] == "no-store"
    assert the(first, "data-balance-cents").attrs["data-balance-cents"] == "9990"
    assert the(later.text, "data-balance-cents").attrs["data-balance-cents"] == "9740"
    oob = the(later.text, "data-header-balance")
    assert oob.attrs["hx-swap-oob"] == "true"
    assert oob.attrs["data-header-balance"] == "9740"


async def test_with_nothing_running_the_page_says_so_and_does_not_poll(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, 2_500_000, payment_intent_id="pi_n")
    page = (await browser.page("/billing")).text
    assert POLLING not in page
    assert the(page, "data-runway").text == "Nothing is running, so nothing is being spent."
    assert header_balance((await browser.page("/")).text) == 2_500  # on every page


async def test_a_used_up_balance_is_a_warning(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, 1_000_000, payment_intent_id="pi_u")
        await post(db, user_id, EntryKind.TOP_UP_REVERSAL, -1_000_500, payment_intent_id="pi_u")
    page = (await browser.page("/billing")).text
    runway = the(page, "data-runway")
    assert runway.attrs["data-runway"] == "bad"
    assert runway.attrs["role"] == "alert"
    assert "used up" in runway.text
    assert header_balance(page) == -1  # a debt of half a cent shows as a whole cent


async def test_a_new_customer_sees_an_empty_ledger_and_a_flat_chart(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    await signed_up(browser, email, engine)
    page = (await browser.page("/billing")).text
    assert the(page, "data-ledger-empty")
    assert header_balance(page) == 0
    bars = the(page, "data-spend-chart").find("rect")
    assert [bar["height"] for bar in bars] == ["0"] * 30
    assert elements(page, "data-grant") == []


async def test_the_ledger_pages_by_twenty_with_an_older_link(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    start = browser.clock.now() - timedelta(hours=1)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        for n in range(25):
            await post(
                db,
                user_id,
                EntryKind.TOP_UP,
                1_000 * (n + 1),
                payment_intent_id=f"pi_{n}",
                now=start + timedelta(seconds=n),
            )
    first = (await browser.page("/billing")).text
    amounts = [int(e.attrs["data-amount-millicents"] or "") for e in elements(first, "data-entry")]
    assert amounts == [1_000 * n for n in range(25, 5, -1)]  # the newest 20
    older = the(first, "data-older").attrs["href"]
    assert older is not None
    second = (await browser.page(older.replace("&amp;", "&"))).text
    amounts = [int(e.attrs["data-amount-millicents"] or "") for e in elements(second, "data-entry")]
    assert amounts == [5_000, 4_000, 3_000, 2_000, 1_000]
    assert elements(second, "data-older") == []
    assert (await browser.page("/billing?cursor=nonsense")).status_code == 422


async def test_the_banner_says_when_the_credit_cap_stopped_instances(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    assert elements((await browser.page("/")).text, "data-credit-banner") == []
    # Stopped with 50 s of the rate left, as the cap's margin leaves a balance.
    await stopped_for_credit(browser, engine, user_id, credit=200_000, ran=150)
    for path in ("/", "/billing", "/dashboard"):
        banner = the((await browser.page(path)).text, "data-credit-banner")
        assert "Your pay-as-you-go instances were stopped: your credit ran out." in banner.text
        assert banner.find("a", href="/billing")

    browser.clock.advance(hours=25)  # a day later, with credit left: no longer news
    assert elements((await browser.page("/")).text, "data-credit-banner") == []


async def test_the_banner_stays_while_the_balance_is_not_positive_and_leaves_after_a_top_up(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await stopped_for_credit(browser, engine, user_id, credit=100_000, ran=130)  # 30 s in debt
    browser.clock.advance(days=3)
    page = (await browser.page("/")).text
    assert the(page, "data-credit-banner")
    assert header_balance(page) == -30

    await top_up(browser, engine, user_id, 1_000_000)
    browser.clock.advance(seconds=1)
    page = (await browser.page("/")).text
    assert elements(page, "data-credit-banner") == []
    assert header_balance(page) == 970


async def test_a_top_up_since_the_stop_ends_the_banner_at_once(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await stopped_for_credit(browser, engine, user_id, credit=200_000, ran=150)
    assert the((await browser.page("/")).text, "data-credit-banner")
    browser.clock.advance(minutes=5)
    await top_up(browser, engine, user_id, 2_500_000)
    assert elements((await browser.page("/")).text, "data-credit-banner") == []


def test_the_chart_scales_bars_to_the_busiest_day_and_shows_any_spend() -> None:
    today = date(2026, 11, 30)
    days = [
        DaySpend(today - timedelta(days=n), spent) for n, spent in ((2, 0), (1, 9), (0, 600_000))
    ]
    chart = spend_chart(days)
    assert [bar.height for bar in chart.bars] == [0, 1, CHART_HEIGHT]  # 9 millicents still shows
    assert [bar.y + bar.height for bar in chart.bars] == [CHART_HEIGHT] * 3  # on one baseline
    assert [bar.cents for bar in chart.bars] == [0, 0, 600]
    assert chart.highest == chart.bars[2]
    assert chart.description == (
        "Daily spend over the last 3 days: $6.00 in all; the most, $6.00, on 2026-11-30."
    )
    assert spend_chart([DaySpend(today, 0)]).description.endswith("nothing was spent.")


async def test_the_budget_form_sets_shows_refuses_and_removes_the_budget(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    page = (await browser.page("/billing")).text
    assert "No budget set." in the(page, "data-budget").text

    refused = await browser.submit("/billing/budget", {"limit": "lots"}, form_page="/billing")
    assert refused.status_code == 422
    assert "Enter the budget in dollars" in the(refused.text, "data-budget-error").text
    assert 'value="lots"' in refused.text  # what was typed stays

    saved = await browser.submit(
        "/billing/budget", {"limit": "250", "stop_running": "true"}, form_page="/billing"
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/billing#budget"
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await add_metered(db, user_id, rate=RATE, started_at=browser.clock.now())
    browser.clock.advance(seconds=3600)  # $36 of $250: 14 %
    page = (await browser.page("/billing")).text
    assert the(page, "data-budget-limit-cents").attrs["data-budget-limit-cents"] == "25000"
    assert the(page, "data-budget-spent-cents").text == "$36.00"
    assert "checked" in the(page, "data-budget-stop-running").attrs
    assert 'aria-valuenow="14"' in page

    removed = await browser.submit("/billing/budget", {"limit": ""}, form_page="/billing")
    assert removed.status_code == 303
    budget = the((await browser.page("/billing")).text, "data-budget")
    assert "No budget set." in budget.text
    async with unit_of_work(create_sessionmaker(engine)) as db:  # stop it burning
        await stop_for_credit(db, [user_id], now=browser.clock.now())
        take_requested_jobs(db)
