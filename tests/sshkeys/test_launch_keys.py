"""A pay-as-you-go launch chooses the account's SSH keys (all of them by default): they are
copied onto the instance, stay there when the account's key is deleted, and reach the provider
with the launch; another account's key is a 422."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.clock import SystemClock
from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances import service
from computebill.instances.models import Instance, SimulatedMachine
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import take_requested_jobs
from tests.instances.test_pay_as_you_go_api import H100, fund, launch
from tests.sshkeys.keys import new_public_line
from tests.sshkeys.test_ssh_keys_api import add, bearer
from tests.support.http import Api


async def funded_account(api: Api, email: str, engine: AsyncEngine) -> dict[str, Any]:
    pair = await api.sign_up(email)
    await fund(engine, pair["user"]["id"], 100_000_000)  # $1,000
    return pair


async def instance_keys(api: Api, pair: dict[str, Any], instance_id: str) -> list[Any]:
    answer = await api.http.get(f"/api/v1/instances/{instance_id}", headers=bearer(pair))
    assert answer.status_code == 200, answer.text
    return [(key["name"], key["fingerprint"]) for key in answer.json()["ssh_keys"]]


async def launched_machine(engine: AsyncEngine, instance_id: str) -> SimulatedMachine:
    """Run the launch as the worker would, with the simulated provider."""
    sessions = create_sessionmaker(engine)

    @asynccontextmanager
    async def units() -> AsyncIterator[AsyncSession]:
        async with unit_of_work(sessions) as db:
            yield db
            take_requested_jobs(db)

    clock = SystemClock()
    provider = SimulatedProvider(sessions, clock=clock, boot_seconds=(0, 0))
    await service.launch(units, provider, uuid.UUID(instance_id), now=clock.now())
    async with units() as db:
        provider_id = await db.scalar(
            select(Instance.provider_id).where(Instance.id == uuid.UUID(instance_id))
        )
        machine = await db.get(SimulatedMachine, provider_id)
    assert machine is not None
    return machine


async def test_a_launch_puts_the_chosen_keys_on_the_machine(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await funded_account(api, email, engine)
    laptop_line = new_public_line("ed25519", comment="ada@laptop")
    laptop = (await add(api, pair, laptop_line, name="laptop")).json()
    await add(api, pair, new_public_line("ecdsa256"), name="desktop")

    made = await launch(api, pair["access_token"], H100 | {"ssh_key_ids": [laptop["id"]]})
    assert made.status_code == 201, made.text
    instance_id = made.json()["id"]
    assert await instance_keys(api, pair, instance_id) == [("laptop", laptop["fingerprint"])]

    machine = await launched_machine(engine, instance_id)
    assert machine.ssh_public_keys == [laptop_line]


async def test_by_default_every_key_of_the_account_goes_and_stays(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await funded_account(api, email, engine)
    first = (await add(api, pair, new_public_line("rsa2048"), name="first")).json()
    second_line = new_public_line("ecdsa384")
    second = (await add(api, pair, second_line, name="second")).json()

    made = await launch(api, pair["access_token"], H100)
    assert made.status_code == 201, made.text
    instance_id = made.json()["id"]
    expected = [("first", first["fingerprint"]), ("second", second["fingerprint"])]
    assert await instance_keys(api, pair, instance_id) == expected

    deleted = await api.http.delete(f"/api/v1/ssh-keys/{first['id']}", headers=bearer(pair))
    assert deleted.status_code == 204
    assert await instance_keys(api, pair, instance_id) == expected
    machine = await launched_machine(engine, instance_id)
    assert machine.ssh_public_keys == [first["public_key"], second_line]

    # An account with no keys launches machines without any.
    bare = await funded_account(api, "bare-" + email, engine)
    keyless = await launch(api, bare["access_token"], H100)
    assert keyless.status_code == 201
    assert await instance_keys(api, bare, keyless.json()["id"]) == []


async def test_another_accounts_key_is_a_422_and_launches_nothing(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await funded_account(api, email, engine)
    other = await api.sign_up("other-" + email)
    theirs = (await add(api, other, new_public_line())).json()
    mine = (await add(api, pair, new_public_line())).json()

    for ids in ([theirs["id"]], [mine["id"], theirs["id"]], [str(uuid.uuid4())]):
        answer = await launch(api, pair["access_token"], H100 | {"ssh_key_ids": ids})
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "unknown_ssh_key"
    async with unit_of_work(create_sessionmaker(engine)) as db:
        made = await db.scalar(
            select(func.count()).where(Instance.user_id == uuid.UUID(pair["user"]["id"]))
        )
    assert made == 0
