"""Running the app under uvicorn so that SIGINT/SIGTERM stop it cleanly with exit status 0."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from stripe_emulator.app import create_app
from stripe_emulator.config import EmulatorConfig


class _Server(uvicorn.Server):
    """Uvicorn re-raises SIGINT/SIGTERM after a graceful shutdown, which makes the process exit
    non-zero; a parent stopping the emulator on purpose should see exit status 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(config: EmulatorConfig, *, host: str, port: int, log_level: str) -> bool:
    """Serve until signalled; False when the server could not start (e.g. port in use)."""
    server = _Server(uvicorn.Config(create_app(config), host=host, port=port, log_level=log_level))
    server.run()
    return server.started
