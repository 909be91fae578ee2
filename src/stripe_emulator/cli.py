"""`stripe-emulator serve …` and `stripe-emulator trigger EVENT_TYPE [--for cs_…]`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from stripe_emulator.config import (
    DEFAULT_DATA_DIR,
    DEFAULT_PORT,
    WEBHOOK_TIMINGS,
    EmulatorConfig,
)

DEFAULT_API_BASE = f"http://127.0.0.1:{DEFAULT_PORT}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-emulator", description="A local, stateful Stripe for development and tests."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the emulator")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    serve.add_argument(
        "--forward-to",
        action="append",
        default=[],
        metavar="URL",
        help="deliver webhooks to this URL (repeatable)",
    )
    serve.add_argument(
        "--webhook-secret",
        metavar="whsec_…",
        help="signing secret (default: one generated once and kept in the data dir)",
    )
    serve.add_argument("--duplicate", action="store_true", help="deliver every event twice")
    serve.add_argument("--shuffle", action="store_true", help="deliver due events out of order")
    serve.add_argument(
        "--delay", type=float, default=0.0, metavar="SECONDS", help="wait before delivering"
    )
    serve.add_argument(
        "--webhook-timing",
        choices=sorted(WEBHOOK_TIMINGS),
        default="queued",
        help="deliver an API request's events before or after its response (default: queued)",
    )
    serve.add_argument(
        "--retry-base",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="first retry delay; doubles each attempt (default 60)",
    )
    serve.add_argument(
        "--max-attempts", type=int, default=13, help="delivery attempts before giving up"
    )
    serve.add_argument(
        "--webhook-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a delivery not answered in time is retried",
    )
    serve.add_argument(
        "--async-settle-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="when a US bank account payment settles",
    )
    serve.add_argument(
        "--min-session-lifetime",
        type=int,
        default=30 * 60,
        metavar="SECONDS",
        help="smallest expires_at - now accepted (Stripe: 1800)",
    )
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="where browsers reach the emulator, for its checkout links (default: as called)",
    )
    serve.add_argument("--log-level", default="info")

    trigger = commands.add_parser("trigger", help="cause an event in a running emulator")
    trigger.add_argument("event_type", metavar="EVENT_TYPE")
    trigger.add_argument("--for", dest="session_id", metavar="cs_…", help="an existing session")
    trigger.add_argument("--api-base", default=DEFAULT_API_BASE)
    return parser


def _serve(args: argparse.Namespace) -> int:
    if args.webhook_secret is not None and not args.webhook_secret.startswith("whsec_"):
        sys.stderr.write("stripe-emulator: --webhook-secret must start with whsec_\n")
        return 2
    config = EmulatorConfig(
        data_dir=args.data_dir,
        forward_to=tuple(args.forward_to),
        webhook_secret=args.webhook_secret,
        duplicate=args.duplicate,
        shuffle=args.shuffle,
        delay_seconds=args.delay,
        webhook_timing=args.webhook_timing,
        retry_base_seconds=args.retry_base,
        max_attempts=args.max_attempts,
        webhook_timeout_seconds=args.webhook_timeout,
        async_settle_seconds=args.async_settle_delay,
        min_session_lifetime_seconds=args.min_session_lifetime,
        public_url=args.public_url,
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # Imported here so that `trigger` starts fast: it never loads the web stack.
    from stripe_emulator.server import serve

    started = serve(config, host=args.host, port=args.port, log_level=args.log_level)
    return 0 if started else 1


def _trigger(args: argparse.Namespace) -> int:
    body = {"event": args.event_type, "for": args.session_id}
    try:
        response = httpx.post(f"{args.api_base}/_emulator/trigger", json=body, timeout=30)
    except httpx.HTTPError as exc:
        sys.stderr.write(f"stripe-emulator: cannot reach {args.api_base}: {exc}\n")
        return 1
    answer = response.json()
    if response.status_code != 200:
        sys.stderr.write(f"stripe-emulator: {answer['error']['message']}\n")
        return 1
    print(f"Triggered {args.event_type} on {answer['session']}")  # noqa: T201
    for event_id in answer["events"]:
        print(f"  {event_id}")  # noqa: T201
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _serve(args) if args.command == "serve" else _trigger(args)
