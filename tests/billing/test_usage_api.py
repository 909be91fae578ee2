"""`GET /api/v1/usage`: what the caller's instances were charged in a period, per instance or
per UTC day, from the ledger's usage entries; the total always the rows' sum and the entries';
refusals of bad periods; the CSV answer; nobody else's usage; no token, no answer."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.billing.schemas import UsageOut
from computebill.credits.models import EntryKind
from computebill.db import create_sessionmaker, unit_of_work
from computebill.money import decimal_units
from tests.credits.ledger import post
from tests.instances.metering import add_metered
from tests.support.http import Api
from tests.support.openapi import assert_documented

DAY_ONE = datetime(2026, 11, 2, tzinfo=UTC)


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def _customer(api: Api, email: str) -> tuple[uuid.UUID, str]:
    pair = await api.sign_up(email)
    return uuid.UUID(pair["user"]["id"]), pair["access_token"]


async def _usage(api: Api, token: str, **query: str) -> Any:
    return await api.get(f"/api/v1/usage?{urlencode(query)}", token)


async def _history(engine: AsyncEngine, user_id: uuid.UUID) -> tuple[list[uuid.UUID], list[int]]:
    """Two instances charged over three days, with entries just outside the period
    [DAY_ONE, DAY_ONE + 3 days) and entries of other kinds inside it. Returns the instances and
    the charges inside the period."""
    inside: list[int] = []
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, 90_000_000, payment_intent_id="pi_t", now=DAY_ONE)
        first = await add_metered(db, user_id, rate=3_612_345, started_at=DAY_ONE)
        second = await add_metered(db, user_id, rate=250_001, started_at=DAY_ONE)
        charges = [
            (first.id, DAY_ONE - timedelta(microseconds=1), -999_999),  # before: not counted
            (first.id, DAY_ONE, -1_000_001),
            (first.id, DAY_ONE + timedelta(hours=23, minutes=59, seconds=59), -33_333),
            (second.id, DAY_ONE + timedelta(days=1), -7),
            (first.id, DAY_ONE + timedelta(days=1, hours=5), -123_456),
            (second.id, DAY_ONE + timedelta(days=2, hours=23), -250_001),
            (second.id, DAY_ONE + timedelta(days=3), -5),  # the end is excluded
        ]
        for instance_id, at, amount in charges:
            await post(db, user_id, EntryKind.USAGE, amount, instance_id=instance_id, now=at)
            if DAY_ONE <= at < DAY_ONE + timedelta(days=3):
                inside.append(-amount)
        await post(db, user_id, EntryKind.GRANT, 1_000, now=DAY_ONE + timedelta(hours=1))
        await post(
            db,
            user_id,
            EntryKind.ADJUSTMENT,
            -1_000,
            reason="test",
            now=DAY_ONE + timedelta(hours=2),
        )
    return [first.id, second.id], inside


PERIOD = {"from": _z(DAY_ONE), "to": _z(DAY_ONE + timedelta(days=3))}


async def test_usage_per_instance_adds_up_exactly(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    user_id, token = await _customer(api, email)
    (first, second), inside = await _history(engine, user_id)
    answer = await _usage(api, token, **PERIOD)
    assert_documented(api.app, answer, UsageOut)
    body = answer.json()
    first_charged = 1_000_001 + 33_333 + 123_456
    assert body["rows"] == [
        {
            "instance_id": str(first),
            "name": body["rows"][0]["name"],
            "gpu_name": "NVIDIA H100",
            "gpu_count": 1,
            "rate_millicents_per_hour": 3_612_345,
            "entries": 3,
            "charged_millicents": first_charged,
            "charged_cents": 1_157,  # 1,156.790 ¢
        },
        {
            "instance_id": str(second),
            "name": body["rows"][1]["name"],
            "gpu_name": "NVIDIA H100",
            "gpu_count": 1,
            "rate_millicents_per_hour": 250_001,
            "entries": 2,
            "charged_millicents": 250_008,
            "charged_cents": 250,
        },
    ]
    assert body["rows"][0]["name"].startswith("h100x1-")
    assert body["total_millicents"] == sum(inside) == first_charged + 250_008
    assert body["total_millicents"] == sum(row["charged_millicents"] for row in body["rows"])
    assert body["entries"] == len(inside) == 5
    assert body["total_cents"] == 1_407  # 1,406.798 ¢
    assert (body["from"], body["to"], body["group_by"]) == (
        PERIOD["from"],
        PERIOD["to"],
        "instance",
    )


async def test_usage_per_utc_day(api: Api, email: str, engine: AsyncEngine) -> None:
    user_id, token = await _customer(api, email)
    _, inside = await _history(engine, user_id)
    answer = await _usage(api, token, **PERIOD, group_by="day")
    assert_documented(api.app, answer, UsageOut)
    body = answer.json()
    assert body["rows"] == [
        {
            "day": "2026-11-02",
            "entries": 2,
            "charged_millicents": 1_033_334,
            "charged_cents": 1_033,
        },
        {"day": "2026-11-03", "entries": 2, "charged_millicents": 123_463, "charged_cents": 123},
        {"day": "2026-11-04", "entries": 1, "charged_millicents": 250_001, "charged_cents": 250},
    ]
    assert body["total_millicents"] == sum(inside)
    assert body["total_millicents"] == sum(row["charged_millicents"] for row in body["rows"])
    # A period in another timezone means the same instants, and days stay UTC's.
    shifted = await _usage(
        api,
        token,
        **{"from": "2026-11-02T01:00:00+01:00", "to": "2026-11-05T01:00:00+01:00"},
        group_by="day",
    )
    assert shifted.json()["rows"] == body["rows"]


async def test_usage_defaults_to_the_last_30_days(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    user_id, token = await _customer(api, email)
    now = api.clock.now()
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, 1_000_000, payment_intent_id="pi_t", now=now)
        await post(db, user_id, EntryKind.USAGE, -5, now=now - timedelta(days=30, seconds=1))
        await post(db, user_id, EntryKind.USAGE, -7, now=now - timedelta(days=29))
        await post(db, user_id, EntryKind.USAGE, -11, now=now)  # `to` is now, excluded
    body = (await _usage(api, token)).json()
    assert body["from"] == _z(now - timedelta(days=30))
    assert body["to"] == _z(now)
    assert body["rows"] == [
        {
            "instance_id": None,
            "name": None,
            "gpu_name": None,
            "gpu_count": None,
            "rate_millicents_per_hour": None,
            "entries": 1,
            "charged_millicents": 7,
            "charged_cents": 0,
        }
    ]
    assert (body["total_millicents"], body["entries"]) == (7, 1)


async def test_a_customer_with_no_usage_has_an_empty_report(api: Api, email: str) -> None:
    _, token = await _customer(api, email)
    answer = await _usage(api, token, group_by="day")
    assert_documented(api.app, answer, UsageOut)
    body = answer.json()
    assert (body["rows"], body["entries"], body["total_millicents"], body["total_cents"]) == (
        [],
        0,
        0,
        0,
    )


async def test_another_customers_usage_is_never_shown(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    user_id, _ = await _customer(api, email)
    await _history(engine, user_id)
    _, other = await _customer(api, f"other-{email}")
    for group_by in ("instance", "day"):
        body = (await _usage(api, other, **PERIOD, group_by=group_by)).json()
        assert (body["rows"], body["total_millicents"]) == ([], 0)
        csv_answer = await _usage(api, other, **PERIOD, group_by=group_by, format="csv")
        assert len(csv_answer.text.splitlines()) == 1  # the header alone


async def test_usage_needs_an_access_token(api: Api) -> None:
    answer = await api.http.get("/api/v1/usage")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


async def _refused(api: Api, token: str, code: str, **query: str) -> None:
    answer = await _usage(api, token, **query)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code


async def test_bad_periods_are_refused_with_422(api: Api, email: str) -> None:
    _, token = await _customer(api, email)
    start = "2026-11-02T00:00:00Z"
    await _refused(api, token, "usage_time_without_timezone", **{"from": "2026-11-02T00:00:00"})
    await _refused(api, token, "usage_time_without_timezone", to="2026-11-02")
    await _refused(api, token, "usage_period_empty", **{"from": start, "to": start})
    await _refused(
        api, token, "usage_period_empty", **{"from": start, "to": "2026-11-01T23:59:59Z"}
    )
    await _refused(
        api, token, "usage_period_too_long", **{"from": start, "to": "2027-11-04T00:00:00Z"}
    )
    await _refused(api, token, "usage_time_out_of_range", to="0001-01-02T00:00:00Z")
    await _refused(api, token, "usage_time_out_of_range", to="9999-12-31T23:00:00-05:00")
    await _refused(api, token, "validation_error", **{"from": "yesterday"})
    await _refused(api, token, "validation_error", to="1764547200")  # seconds since 1970
    await _refused(api, token, "validation_error", to="0.5")
    await _refused(api, token, "validation_error", group_by="week")
    await _refused(api, token, "validation_error", format="xml")
    # 366 days exactly is allowed.
    allowed = await _usage(api, token, **{"from": start, "to": "2027-11-03T00:00:00Z"})
    assert allowed.status_code == 200, allowed.text


async def test_usage_as_csv(api: Api, email: str, engine: AsyncEngine) -> None:
    user_id, token = await _customer(api, email)
    (first, second), _ = await _history(engine, user_id)
    json_rows = (await _usage(api, token, **PERIOD)).json()["rows"]
    answer = await _usage(api, token, **PERIOD, format="csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        "attachment; filename=usage-20261102T000000Z-20261105T000000Z.csv"
    )
    assert list(csv.reader(io.StringIO(answer.text))) == [
        ["instance_id", "name", "gpu_name", "gpu_count", "rate_per_hour", "entries", "charged"],
        [str(first), json_rows[0]["name"], "NVIDIA H100", "1", "36.12345", "3", "11.56790"],
        [str(second), json_rows[1]["name"], "NVIDIA H100", "1", "2.50001", "2", "2.50008"],
    ]
    # The same through the Accept header, per day.
    by_day = await api.http.get(
        f"/api/v1/usage?{urlencode(PERIOD | {'group_by': 'day'})}",
        headers={"authorization": f"Bearer {token}", "accept": "text/csv"},
    )
    assert by_day.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_day.text.splitlines() == [
        "day,entries,charged",
        "2026-11-02,2,10.33334",
        "2026-11-03,2,1.23463",
        "2026-11-04,1,2.50001",
    ]


def test_amounts_are_written_as_exact_decimals() -> None:
    assert decimal_units(1_234_567) == "12.34567"
    assert decimal_units(0) == "0.00000"
    assert decimal_units(5) == "0.00005"
    assert decimal_units(-100_000) == "-1.00000"
    assert decimal_units(10**20 + 1) == "1000000000000000.00001"
