"""One emulator process and one webhook receiver shared by the emulator's tests; tests that need
other options (duplicate, shuffle, delay, retries, restarts) start their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from tests.stripe_emulator.support import MAIN_PATH, WEBHOOK_SECRET, WebhookReceiver
from tests.support.stripe import EmulatorProcess


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture(scope="session")
def emulator(
    receiver: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(
        tmp_path_factory.mktemp("emulator"),
        "--forward-to",
        receiver.url(MAIN_PATH),
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--retry-base",
        "0.2",
        "--async-settle-delay",
        "1",
        "--min-session-lifetime",
        "1",
    ).start()
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="session")
def client(emulator: EmulatorProcess) -> stripe.StripeClient:
    return emulator.client()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "stripe-emulator"
