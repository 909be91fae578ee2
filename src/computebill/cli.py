"""The `computebill` command: `up`, `app`, `worker`, `migrate`, `seed`, `admin`, `events`,
`credits`, `statements`, `backup`, `restore`, `reset`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import socket
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType

from computebill.config import ConfigurationError, Environment, Settings, get_settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.logging import configure_logging


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from computebill.devserver.supervisor import run_up

    return run_up(settings, host=args.host, port=args.port, data_dir=Path(args.data_dir))


def _worker_processes(value: str) -> int:
    """`--workers`: a positive count, or `auto` for one process per core."""
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or `auto`: {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return count


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _app(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    settings.check_services_configured()
    settings.check_keys_configured()
    # Once Uvicorn has shut down gracefully on SIGTERM it raises the signal again for the handler
    # it found; the default one would end the process as killed by it (status 143 in a
    # container) after a stop that went as asked. This one makes that stop exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "computebill.app:create_app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
        # The app believes X-Forwarded-For only from FORWARDED_ALLOW_IPS (app.py), under any
        # server; Uvicorn's own default would trust it from 127.0.0.1.
        proxy_headers=False,
    )
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from computebill.metrics import serve_metrics
    from computebill.tracing import WORKER_SERVICE, start_tracing, stop_tracing
    from computebill.worker.runtime import run_worker

    settings.check_services_configured()
    configure_logging(settings)
    start_tracing(settings, WORKER_SERVICE)
    if settings.worker_metrics_port is not None:
        serve_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
    try:
        run_worker(settings, concurrency=args.concurrency)
    finally:
        stop_tracing()  # the last jobs' spans are sent before the process ends
    return 0


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from computebill.migrations import upgrade_to_head

    upgrade_to_head(settings)
    print("database is at the latest migration")
    return 0


def _seed(settings: Settings, _: argparse.Namespace) -> int:
    from computebill.seed import seed

    seed(settings)
    print("catalog seeded")
    return 0


def _set_role(settings: Settings, email: str, role_name: str) -> int:
    """Give an account a role (`user` takes the operator's away), recorded in the audit log
    under the operating-system account that ran the command."""
    from computebill.audit.service import AuditAction, command_line_actor, record
    from computebill.auth.service import Role, RoleChange, set_role

    role = Role(role_name)

    async def apply() -> RoleChange | None:
        engine = create_engine(settings)
        try:
            async with unit_of_work(create_sessionmaker(engine)) as db:
                change = await set_role(db, email=email, role=role)
                if change is not None:
                    await record(
                        db,
                        command_line_actor(_operator()),
                        AuditAction.ROLE_REVOKED if role is Role.USER else AuditAction.ROLE_GRANTED,
                        target_type="user",
                        target_id=str(change.user_id),
                        before={"role": change.before.value},
                        after={"role": change.after.value},
                        now=datetime.now(UTC),
                    )
                return change
        finally:
            await engine.dispose()

    if asyncio.run(apply()) is None:
        print(f"no account with the e-mail {email}", file=sys.stderr)
        return 1
    if role is Role.USER:
        print(f"{email} is now a customer only")
        return 0
    print(f"{email} is now {role.value}")
    if settings.require_admin_2fa:
        print("the console answers it once two-factor authentication is on (/account/security)")
    return 0


def _operator() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):  # no name for the process's user id, as in some containers
        return f"uid {os.getuid()}@{socket.gethostname()}"


def _admin_grant(settings: Settings, args: argparse.Namespace) -> int:
    return _set_role(settings, args.email, args.role)


def _admin_revoke(settings: Settings, args: argparse.Namespace) -> int:
    return _set_role(settings, args.email, "user")


def _events_replay(settings: Settings, args: argparse.Namespace) -> int:
    from computebill.audit.service import command_line_actor
    from computebill.errors import NotFound
    from computebill.payments.inbox import replay_event_audited
    from computebill.queue.publisher import AppQueuePublisher

    async def replay() -> None:
        engine = create_engine(settings)
        publisher = AppQueuePublisher(settings)
        try:
            async with unit_of_work(create_sessionmaker(engine), publisher) as db:
                await replay_event_audited(
                    db,
                    args.event_id,
                    actor=command_line_actor(_operator()),
                    now=datetime.now(UTC),
                )
        finally:
            await publisher.close()
            await engine.dispose()

    try:
        asyncio.run(replay())
    except NotFound:
        print(f"no stored event {args.event_id}", file=sys.stderr)
        return 1
    print(f"{args.event_id} queued for processing again")
    return 0


def _credits_verify(settings: Settings, _: argparse.Namespace) -> int:
    from computebill.credits.service import Mismatch, verify_ledger

    async def verify() -> list[Mismatch]:
        engine = create_engine(settings)
        try:
            async with unit_of_work(create_sessionmaker(engine)) as db:
                return await verify_ledger(db)
        finally:
            await engine.dispose()

    mismatches = asyncio.run(verify())
    for mismatch in mismatches:
        print(
            f"ledger mismatch: user {mismatch.user_id} has a balance of "
            f"{mismatch.balance_millicents} millicents; its entries sum to "
            f"{mismatch.entries_sum_millicents}, and its latest left "
            f"{mismatch.last_balance_after_millicents}"
        )
    if mismatches:
        return 1
    print("ledger OK: every balance equals the sum of its entries")
    return 0


def _month(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC).date()
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month written YYYY-MM") from error


def _statements_issue(settings: Settings, args: argparse.Namespace) -> int:
    from computebill.clock import SystemClock
    from computebill.invoices.service import Seller, issue_statements, month_bounds

    now = SystemClock().now()
    if now < month_bounds(args.month)[1]:
        print(f"{args.month:%Y-%m} has not ended yet (UTC)", file=sys.stderr)
        return 1

    async def issue() -> int:
        engine = create_engine(settings)
        try:
            async with unit_of_work(create_sessionmaker(engine)) as db:
                return await issue_statements(db, args.month, seller=Seller.of(settings), now=now)
        finally:
            await engine.dispose()

    print(f"{asyncio.run(issue())} statements of {args.month:%Y-%m} issued")
    return 0


def _operation(command: str, run: Callable[[], str]) -> int:
    """Run a backup, restore or reset; print what it did, or why it could not."""
    from computebill.devserver.backup import OperationError

    try:
        print(run())
    except OperationError as error:
        print(f"computebill {command}: {error}", file=sys.stderr)
        return error.status
    return 0


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from computebill.devserver.backup import backup

    return _operation("backup", lambda: backup(settings, Path(args.data_dir), Path(args.to)))


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from computebill.devserver.backup import restore

    return _operation(
        "restore",
        lambda: restore(settings, Path(args.data_dir), Path(args.source), yes=args.yes),
    )


def _reset(settings: Settings, args: argparse.Namespace) -> int:
    from computebill.devserver.backup import reset

    if settings.environment is Environment.PRODUCTION:
        print("computebill reset: refused, ENVIRONMENT is production", file=sys.stderr)
        return 2
    return _operation("reset", lambda: reset(settings, Path(args.data_dir), yes=args.yes))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="computebill", description="Compute Billing Platform")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="run everything: embedded services where no URL is set, app and worker"
    )
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", default=".data", help="where embedded servers keep their data")
    up.set_defaults(handler=_up)

    app = commands.add_parser("app", help="serve the web app and the API")
    app.add_argument("--host", default="127.0.0.1")
    app.add_argument("--port", type=int, default=8000)
    app.add_argument(
        "--workers",
        type=_worker_processes,
        default=1,
        help="server processes: a number, or `auto` for one per core (default 1; `up` runs 1)",
    )
    app.set_defaults(handler=_app)

    worker = commands.add_parser("worker", help="run background jobs and the cron schedule")
    worker.add_argument("--concurrency", type=int, default=None, help="jobs run at once")
    worker.set_defaults(handler=_worker)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(handler=_migrate)

    seed = commands.add_parser("seed", help="add the starting catalog where it is missing")
    seed.set_defaults(handler=_seed)

    admin = commands.add_parser("admin", help="account administration")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    grant = admin_commands.add_parser("grant", help="give an account an operator's role")
    grant.add_argument("email")
    grant.add_argument(
        "--role",
        choices=["admin", "support"],
        default="admin",
        help="admin: everything; support: the console read-only, and ending sessions",
    )
    grant.set_defaults(handler=_admin_grant)
    revoke = admin_commands.add_parser("revoke", help="take an account's operator role away")
    revoke.add_argument("email")
    revoke.set_defaults(handler=_admin_revoke)

    events = commands.add_parser("events", help="Stripe events received by the webhook")
    event_commands = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    replay = event_commands.add_parser("replay", help="process a stored event again")
    replay.add_argument("event_id")
    replay.set_defaults(handler=_events_replay)

    credits = commands.add_parser("credits", help="the credit ledger")
    credit_commands = credits.add_subparsers(
        dest="credits_command", required=True, metavar="ACTION"
    )
    verify = credit_commands.add_parser(
        "verify", help="check every balance against its entries (exit 1 when one differs)"
    )
    verify.set_defaults(handler=_credits_verify)

    statements = commands.add_parser("statements", help="monthly statements of the credit ledger")
    statement_commands = statements.add_subparsers(
        dest="statements_command", required=True, metavar="ACTION"
    )
    issue = statement_commands.add_parser(
        "issue", help="issue a month's missing statements (the ones issued stay as they are)"
    )
    issue.add_argument("--month", type=_month, required=True, help="YYYY-MM, a month that ended")
    issue.set_defaults(handler=_statements_issue)

    embedded_data = "without DATABASE_URL: the data directory of `up`'s embedded PostgreSQL"
    backup = commands.add_parser(
        "backup", help="write the database to a file (pg_dump's custom format)"
    )
    backup.add_argument("--to", required=True, metavar="FILE")
    backup.add_argument("--data-dir", default=".data", help=embedded_data)
    backup.set_defaults(handler=_backup)

    restore = commands.add_parser(
        "restore", help="replace the database by a backup (drops and creates it, then pg_restore)"
    )
    restore.add_argument("--from", dest="source", required=True, metavar="FILE")
    restore.add_argument("--data-dir", default=".data", help=embedded_data)
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.set_defaults(handler=_restore)

    reset = commands.add_parser(
        "reset",
        help="development: drop and create the database, migrate, seed, empty the queue "
        "(refused when ENVIRONMENT=production)",
    )
    reset.add_argument("--data-dir", default=".data", help=embedded_data)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(handler=_reset)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
        status = args.handler(settings, args)
    except ConfigurationError as error:
        print(error, file=sys.stderr)
        status = 2
    sys.exit(status)
