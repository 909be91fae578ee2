"""A cart or order line in the words a customer reads: one wording for the cart, the order
pages, the receipt, the invoice and Stripe's pay page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ConfiguredLine(Protocol):
    """A cart or order line's configuration, and how many of it."""

    @property
    def gpu_count(self) -> int: ...
    @property
    def vcpus(self) -> int: ...
    @property
    def storage_gb(self) -> int: ...
    @property
    def hours(self) -> int: ...
    @property
    def region(self) -> str: ...
    @property
    def quantity(self) -> int: ...


def machine_gpus(gpu_count: int, gpu_name: str) -> str:
    """ "2 × NVIDIA H100 SXM": what a machine is, first."""
    return f"{gpu_count} × {gpu_name}"


@dataclass(frozen=True, slots=True)
class LineDescription:
    """`quantity` identical machines, each with `gpu_count` GPUs and the rest."""

    gpu_name: str
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int  # 0: pay as you go, billed until stopped
    region: str
    quantity: int

    @classmethod
    def of(cls, line: ConfiguredLine, *, gpu_name: str) -> LineDescription:
        return cls(
            gpu_name=gpu_name,
            gpu_count=line.gpu_count,
            vcpus=line.vcpus,
            storage_gb=line.storage_gb,
            hours=line.hours,
            region=line.region,
            quantity=line.quantity,
        )

    @property
    def gpus(self) -> str:
        return machine_gpus(self.gpu_count, self.gpu_name)

    @property
    def details(self) -> str:
        """ "24 vCPUs · 500 GB NVMe · 3 h · us-east-1": the rest of it."""
        duration = f"{self.hours} h" if self.hours else "pay as you go"
        return f"{self.vcpus} vCPUs · {self.storage_gb} GB NVMe · {duration} · {self.region}"

    @property
    def text(self) -> str:
        return f"{self.gpus} · {self.details}"

    @property
    def product_name(self) -> str:
        """The name Stripe's pay page shows above `details` ("NVIDIA H100 SXM × 2"); Stripe's
        quantity is the machines."""
        return f"{self.gpu_name} × {self.gpu_count}"

    @property
    def machines(self) -> str:
        """The quantity, never "1 × 2 × …": "Machines: 1"."""
        return f"Machines: {self.quantity}"

    @property
    def quantity_meaning(self) -> str:
        """Beside a field that changes the quantity."""
        return f"Machines: how many identical machines to start; each has {self.gpus}."
