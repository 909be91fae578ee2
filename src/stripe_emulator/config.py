"""The emulator's options, shared by the command line, the app and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Webhook events carry the API version of the SDK this emulator is checked against.
API_VERSION = "2026-10-28.endive"

DEFAULT_PORT = 12111
# When an API request's events are delivered: by the delivery loop (soon, in no fixed order
# with the response), each attempted once before the response is sent, or right after it.
WEBHOOK_TIMINGS = frozenset({"queued", "before_response", "after_response"})
DEFAULT_DATA_DIR = Path(".data/stripe-emulator")


@dataclass(frozen=True)
class EmulatorConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    forward_to: tuple[str, ...] = ()
    # None: use the secret generated on first start and kept in the data dir.
    webhook_secret: str | None = None
    duplicate: bool = False
    shuffle: bool = False
    delay_seconds: float = 0.0
    webhook_timing: str = "queued"
    # Retries wait retry_base_seconds * 2**(attempt - 1); 13 attempts span about three days.
    retry_base_seconds: float = 60.0
    max_attempts: int = 13
    webhook_timeout_seconds: float = 10.0
    async_settle_seconds: float = 5.0
    # Stripe allows expires_at 30 min to 24 h ahead; tests lower the minimum to see expiry.
    min_session_lifetime_seconds: int = 30 * 60
    # Where a browser reaches the emulator, for the links it hands out (checkout pages) when
    # that differs from the address the API was called at (containers name each other).
    # None: the address of each API request.
    public_url: str | None = None
    # How often the expiry/settlement timers and the delivery queue are checked.
    tick_seconds: float = 0.1

    @property
    def database_path(self) -> Path:
        return self.data_dir / "stripe-emulator.sqlite3"
