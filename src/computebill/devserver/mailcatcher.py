"""The SMTP server `computebill up` sends the platform's e-mail to (aiosmtpd): it delivers
nothing, and keeps each message as a file of the directory the app's `/_dev/mail` reads.

Run as `python -m computebill.devserver.mailcatcher --port N --dir DIR` (a child of `up`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from computebill.mail.caught import caught_file_name


class SaveToDirectory:
    """aiosmtpd's handler: each message as it arrived, written whole before it gets its name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        name = caught_file_name(datetime.now(UTC), secrets.token_hex(6))
        await asyncio.to_thread(self._write, name, content)
        return "250 Message caught"

    def _write(self, name: str, content: bytes) -> None:
        partial = self.directory / f".{name}.part"
        partial.write_bytes(content)
        os.replace(partial, self.directory / name)


async def serve(host: str, port: int, directory: Path) -> None:
    handler = SaveToDirectory(directory)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="computebill-mailcatcher", enable_SMTPUTF8=True),
        host=host,
        port=port,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="mailcatcher", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    arguments = parser.parse_args()
    arguments.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(arguments.host, arguments.port, arguments.dir))


if __name__ == "__main__":
    main()
