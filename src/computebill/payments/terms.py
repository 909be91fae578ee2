"""What applying a payment takes from the configuration (docs/architecture.md §4): passed down
from the job or route that has the settings, so the services read no configuration of their
own."""

from __future__ import annotations

from dataclasses import dataclass

from computebill.config import Settings
from computebill.invoices.service import Seller


@dataclass(frozen=True, slots=True)
class PaymentTerms:
    """Who sells (the seller on the invoices fulfilment issues) and how long a failed
    auto-recharge waits before each retry (AUTO_RECHARGE_RETRY_SECONDS)."""

    seller: Seller
    retry_delays: tuple[int, ...]

    @classmethod
    def of(cls, settings: Settings) -> PaymentTerms:
        return cls(seller=Seller.of(settings), retry_delays=settings.auto_recharge_retry_delays)
