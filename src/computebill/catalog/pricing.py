"""The one pricing function: quotes, the cart, checkout and the pages all price through it.

Rates are integers: GPU rates in cents, other rates in millicents (1/1000 ¢). A line is priced
exactly in millicents and rounded once, half up, to whole cents per unit, then multiplied by
the quantity. No floats anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from computebill.money import MILLICENTS_PER_CENT, round_half_up


@dataclass(frozen=True, slots=True)
class Rates:
    gpu_hour_cents: int
    vcpu_hour_millicents: int
    storage_gb_hour_millicents: int


@dataclass(frozen=True, slots=True)
class Configuration:
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class Price:
    gpu_hour_millicents: int
    vcpu_hour_millicents: int
    storage_hour_millicents: int
    ram_hour_millicents: int
    hourly_millicents: int
    unit_total_cents: int  # one instance for all its hours
    line_total_cents: int  # unit total × quantity

    @property
    def hourly_cents(self) -> int:
        return round_half_up(self.hourly_millicents, MILLICENTS_PER_CENT)


def price(rates: Rates, configuration: Configuration) -> Price:
    gpu = rates.gpu_hour_cents * MILLICENTS_PER_CENT * configuration.gpu_count
    vcpu = rates.vcpu_hour_millicents * configuration.vcpus
    storage = rates.storage_gb_hour_millicents * configuration.storage_gb
    ram = 0  # system RAM comes with the GPUs (the machine's shape): it has no rate of its own
    hourly = gpu + vcpu + storage + ram
    unit_total = round_half_up(hourly * configuration.hours, MILLICENTS_PER_CENT)
    return Price(
        gpu_hour_millicents=gpu,
        vcpu_hour_millicents=vcpu,
        storage_hour_millicents=storage,
        ram_hour_millicents=ram,
        hourly_millicents=hourly,
        unit_total_cents=unit_total,
        line_total_cents=unit_total * configuration.quantity,
    )
