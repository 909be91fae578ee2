"""Where machines come from. The jobs speak only to `ComputeProvider`, so a real cloud or a
Kubernetes driver can replace the simulation without touching billing."""

from __future__ import annotations

import ipaddress
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.clock import Clock
from computebill.db import unit_of_work
from computebill.instances.models import SimulatedMachine


class MachineState(StrEnum):
    BOOTING = "booting"
    RUNNING = "running"
    FAILED = "failed"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class LaunchImage:
    """What to install: the catalog's machine image by its slug, and its components with their
    versions, its Ubuntu release first (`(("Ubuntu", "24.04"), ("CUDA", "12.6"))`)."""

    slug: str
    versions: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    key: str  # the same key launches the same machine, however often it is asked
    name: str
    gpu_slug: str
    gpu_count: int
    vcpus: int
    storage_gb: int
    region: str
    # Public keys to authorize for the login user, as authorized_keys lines (`type base64
    # [comment]`); the machine is reachable with any of them.
    ssh_public_keys: tuple[str, ...] = ()
    # None: the provider's own base image (instances made before the catalog had images).
    image: LaunchImage | None = None


@dataclass(frozen=True, slots=True)
class Machine:
    provider_id: str
    state: MachineState
    ip_address: str | None = None
    ssh_user: str | None = None
    ssh_port: int | None = None
    ready_at: datetime | None = None
    failure: str | None = None


class ComputeProvider(Protocol):
    async def launch(self, spec: LaunchSpec) -> str: ...

    async def describe(self, provider_id: str) -> Machine: ...

    async def terminate(self, provider_id: str) -> None: ...


# RFC 5737's documentation ranges: addresses that route nowhere.
_DOCUMENTATION_NETWORKS = [
    ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")
]
_ADDRESSES = [str(a) for network in _DOCUMENTATION_NETWORKS for a in network.hosts()]
ADDRESS_LOCK = 0x51A0  # the advisory lock key of address allocation


class SimulatedProvider:
    """Machines that boot after a random time in `boot_seconds`, with addresses from the
    documentation ranges. Launches of the GPU models in `failing_gpus` fail (for tests)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Clock,
        boot_seconds: tuple[float, float],
        failing_gpus: frozenset[str] = frozenset(),
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._boot_seconds = boot_seconds
        self._failing_gpus = failing_gpus

    async def launch(self, spec: LaunchSpec) -> str:
        async with unit_of_work(self._sessionmaker) as db:
            existing = await db.scalar(
                select(SimulatedMachine.provider_id).where(SimulatedMachine.launch_key == spec.key)
            )
            if existing is not None:
                return existing
        for _ in range(10):
            try:
                return await self._launch_new(spec)
            except IntegrityError:
                # Another launch took this address, or this very key, a moment ago.
                async with unit_of_work(self._sessionmaker) as db:
                    existing = await db.scalar(
                        select(SimulatedMachine.provider_id).where(
                            SimulatedMachine.launch_key == spec.key
                        )
                    )
                if existing is not None:
                    return existing
        raise RuntimeError("the simulated provider could not find a free address")

    async def _launch_new(self, spec: LaunchSpec) -> str:
        now = self._clock.now()
        low, high = self._boot_seconds
        async with unit_of_work(self._sessionmaker) as db:
            # One address allocation at a time (released at commit), so launches never collide.
            await db.execute(select(func.pg_advisory_xact_lock(ADDRESS_LOCK)))
            in_use = set(
                await db.scalars(
                    select(SimulatedMachine.ip_address).where(
                        SimulatedMachine.terminated_at.is_(None)
                    )
                )
            )
            address = next((a for a in _ADDRESSES if a not in in_use), None)
            if address is None:
                raise RuntimeError("the simulated provider has no free address")
            provider_id = f"sim-{uuid.uuid4().hex[:12]}"
            db.add(
                SimulatedMachine(
                    provider_id=provider_id,
                    launch_key=spec.key,
                    name=spec.name,
                    region=spec.region,
                    ip_address=address,
                    launched_at=now,
                    ready_at=now + timedelta(seconds=random.uniform(low, high)),  # noqa: S311 - a simulation
                    fails=spec.gpu_slug in self._failing_gpus,
                    ssh_public_keys=list(spec.ssh_public_keys),
                    image_slug=spec.image.slug if spec.image else None,
                    image_versions=(
                        [f"{name} {version}" for name, version in spec.image.versions]
                        if spec.image
                        else None
                    ),
                )
            )
            await db.flush()
        return provider_id

    async def describe(self, provider_id: str) -> Machine:
        async with unit_of_work(self._sessionmaker) as db:
            machine = await db.get(SimulatedMachine, provider_id)
        if machine is None:
            return Machine(provider_id=provider_id, state=MachineState.UNKNOWN)
        if machine.terminated_at is not None:
            return Machine(provider_id=provider_id, state=MachineState.TERMINATED)
        if machine.fails:
            return Machine(
                provider_id=provider_id,
                state=MachineState.FAILED,
                failure="the host failed its health check during boot",
            )
        if self._clock.now() < machine.ready_at:
            return Machine(provider_id=provider_id, state=MachineState.BOOTING)
        return Machine(
            provider_id=provider_id,
            state=MachineState.RUNNING,
            ip_address=machine.ip_address,
            ssh_user="ubuntu",
            ssh_port=22,
            ready_at=machine.ready_at,
        )

    async def terminate(self, provider_id: str) -> None:
        async with unit_of_work(self._sessionmaker) as db:
            await db.execute(
                update(SimulatedMachine)
                .where(
                    SimulatedMachine.provider_id == provider_id,
                    SimulatedMachine.terminated_at.is_(None),
                )
                .values(terminated_at=self._clock.now())
            )
