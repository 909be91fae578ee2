"""The pricing function against an independent computation with exact fractions."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from computebill.catalog.models import MAX_COMPONENT_RATE_MILLICENTS, MAX_GPU_RATE_CENTS
from computebill.catalog.pricing import Configuration, Rates, price

BIGINT_MAX = 2**63 - 1

rates = st.builds(
    Rates,
    gpu_hour_cents=st.integers(0, MAX_GPU_RATE_CENTS),
    vcpu_hour_millicents=st.integers(0, MAX_COMPONENT_RATE_MILLICENTS),
    storage_gb_hour_millicents=st.integers(0, MAX_COMPONENT_RATE_MILLICENTS),
)
configurations = st.builds(
    Configuration,
    gpu_count=st.integers(1, 64),
    vcpus=st.integers(1, 1024),
    storage_gb=st.integers(1, 100_000),
    hours=st.integers(1, 8760),
    quantity=st.integers(1, 8),
)


def expected_line_total(rates: Rates, configuration: Configuration) -> int:
    """Dollars and cents as a person would compute them, in exact fractions of a cent."""
    hourly = (
        Fraction(rates.gpu_hour_cents) * configuration.gpu_count
        + Fraction(rates.vcpu_hour_millicents, 1000) * configuration.vcpus
        + Fraction(rates.storage_gb_hour_millicents, 1000) * configuration.storage_gb
    )
    unit = hourly * configuration.hours
    whole, rest = divmod(unit, 1)
    rounded = int(whole) + (1 if rest >= Fraction(1, 2) else 0)
    return rounded * configuration.quantity


@given(rates, configurations)
def test_line_totals_match_exact_arithmetic(rates: Rates, configuration: Configuration) -> None:
    quoted = price(rates, configuration)
    assert quoted.line_total_cents == expected_line_total(rates, configuration)
    assert quoted.hourly_millicents == (
        quoted.gpu_hour_millicents + quoted.vcpu_hour_millicents + quoted.storage_hour_millicents
    )


@given(rates, configurations)
def test_totals_are_never_negative_and_fit_a_bigint(
    rates: Rates, configuration: Configuration
) -> None:
    quoted = price(rates, configuration)
    assert 0 <= quoted.unit_total_cents <= quoted.line_total_cents <= BIGINT_MAX
    assert quoted.hourly_millicents * configuration.hours <= BIGINT_MAX


def test_the_published_example_prices_to_the_cent() -> None:
    # 8 × H100 at $2.49, 96 vCPUs at 5 ¢, 2000 GB at 0.1 ¢, for 720 hours, twice.
    h100 = Rates(gpu_hour_cents=249, vcpu_hour_millicents=5000, storage_gb_hour_millicents=100)
    quoted = price(
        h100, Configuration(gpu_count=8, vcpus=96, storage_gb=2000, hours=720, quantity=2)
    )
    assert quoted.hourly_cents == 8 * 249 + 96 * 5 + 200  # $26.72 an hour
    assert quoted.unit_total_cents == 2672 * 720
    assert quoted.line_total_cents == 2 * 2672 * 720


def test_a_sub_cent_hourly_rate_is_rounded_once_per_line() -> None:
    # 0.1 ¢ × 5 GB = 0.5 ¢ an hour: rounding each hour would charge 1 ¢ × 3 = 3 ¢; once, 2 ¢.
    storage_only = Rates(gpu_hour_cents=0, vcpu_hour_millicents=0, storage_gb_hour_millicents=100)
    quoted = price(storage_only, Configuration(gpu_count=1, vcpus=1, storage_gb=5, hours=3))
    assert quoted.unit_total_cents == 2  # 1.5 ¢ rounds half up
