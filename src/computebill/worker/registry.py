"""Every job the queue runs: its name, function, options and, for a periodic job, schedule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Concatenate, ParamSpec

from computebill.billing.jobs import enforce_budgets, send_credit_stop_email, send_runway_alerts
from computebill.config import Settings
from computebill.credits.jobs import expire_credit_grants, verify_credit_ledger
from computebill.instances.jobs import (
    enforce_credit_cap,
    expire_instance,
    launch_instance,
    poll_instance,
    provision_order,
    send_expiry_warnings,
    settle_usage,
    stop_instance,
    suspend_instance,
    sweep_credit_caps,
    sweep_instances,
)
from computebill.invoices.jobs import issue_monthly_statements, send_invoice_email
from computebill.jobs import JobContext, JobName
from computebill.mail.jobs import deliver_email, sweep_queued_emails
from computebill.ops.jobs import record_metrics_snapshot, record_worker_heartbeat
from computebill.orders.jobs import send_order_receipt
from computebill.payments.jobs import (
    check_auto_recharge,
    process_stripe_event,
    reconcile_pending_orders,
    save_payment_method,
    save_setup_card,
    send_auto_recharge_email,
    sweep_unprocessed_events,
)

# How often the gauges that need the database are computed (README, "Health, readiness,
# metrics"); the alerts call the snapshot stale after a few of these.
METRICS_SNAPSHOT_SECONDS = 15

P = ParamSpec("P")
JobFunction = Callable[Concatenate[JobContext, P], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class JobSpec:
    function: JobFunction[...]
    timeout: timedelta
    max_tries: int = 5
    # A crontab (seconds first, seven fields) makes this a periodic job, unique across workers.
    cron: str | None = None
    # A unique periodic job's lock outlives a worker killed mid-run by the idle timeout plus its
    # timeout, and every run meanwhile fails. False for jobs two workers may run at once safely
    # and whose stall would cost money: the settlement pass and the credit cap's sweep.
    unique: bool = True


def job_specs(settings: Settings) -> dict[JobName, JobSpec]:
    """Every job the queue runs: its function, options and (for a periodic one) schedule."""
    return {
        JobName.RECORD_WORKER_HEARTBEAT: JobSpec(
            record_worker_heartbeat,
            timeout=timedelta(seconds=settings.worker_heartbeat_seconds),
            max_tries=1,  # the next tick is the retry
            cron=f"*/{settings.worker_heartbeat_seconds} * * * * * *",
        ),
        JobName.RECORD_METRICS_SNAPSHOT: JobSpec(
            record_metrics_snapshot,
            timeout=timedelta(seconds=METRICS_SNAPSHOT_SECONDS),
            max_tries=1,  # the next tick is the retry
            cron=f"*/{METRICS_SNAPSHOT_SECONDS} * * * * * *",
        ),
        JobName.PROCESS_STRIPE_EVENT: JobSpec(
            process_stripe_event, timeout=timedelta(seconds=60), max_tries=6
        ),
        JobName.SEND_ORDER_RECEIPT: JobSpec(
            send_order_receipt, timeout=timedelta(seconds=30), max_tries=5
        ),
        JobName.PROVISION_ORDER: JobSpec(
            provision_order, timeout=timedelta(seconds=60), max_tries=6
        ),
        JobName.LAUNCH_INSTANCE: JobSpec(
            launch_instance, timeout=timedelta(seconds=60), max_tries=6
        ),
        JobName.POLL_INSTANCE: JobSpec(poll_instance, timeout=timedelta(seconds=30), max_tries=6),
        JobName.EXPIRE_INSTANCE: JobSpec(
            expire_instance, timeout=timedelta(seconds=60), max_tries=8
        ),
        JobName.STOP_INSTANCE: JobSpec(stop_instance, timeout=timedelta(seconds=60), max_tries=8),
        JobName.SUSPEND_INSTANCE: JobSpec(
            suspend_instance, timeout=timedelta(seconds=60), max_tries=8
        ),
        JobName.ENFORCE_CREDIT_CAP: JobSpec(
            enforce_credit_cap, timeout=timedelta(seconds=60), max_tries=8
        ),
        JobName.SEND_CREDIT_STOP_EMAIL: JobSpec(
            send_credit_stop_email, timeout=timedelta(seconds=30), max_tries=5
        ),
        JobName.ENFORCE_BUDGETS: JobSpec(
            enforce_budgets,
            timeout=timedelta(seconds=60),
            max_tries=1,  # the next settlement pass asks again
            unique=False,
        ),
        JobName.SEND_INVOICE_EMAIL: JobSpec(
            send_invoice_email, timeout=timedelta(seconds=60), max_tries=5
        ),
        JobName.SAVE_PAYMENT_METHOD: JobSpec(
            save_payment_method, timeout=timedelta(seconds=60), max_tries=6
        ),
        JobName.SAVE_SETUP_CARD: JobSpec(
            save_setup_card, timeout=timedelta(seconds=60), max_tries=6
        ),
        JobName.SEND_AUTO_RECHARGE_EMAIL: JobSpec(
            send_auto_recharge_email, timeout=timedelta(seconds=30), max_tries=5
        ),
        JobName.DELIVER_EMAIL: JobSpec(
            deliver_email,
            # Beyond an SMTP send's own timeout; the job retries a refused send itself, later,
            # so the queue's tries only cover a failure of the database around it.
            timeout=timedelta(seconds=2 * settings.smtp_timeout_seconds + 30),
            max_tries=3,
        ),
        JobName.SWEEP_QUEUED_EMAILS: JobSpec(
            sweep_queued_emails,
            timeout=timedelta(minutes=1),
            max_tries=1,  # the next minute is the retry
            cron="45 * * * * * *",  # every minute, at its 45th second
        ),
        JobName.CHECK_AUTO_RECHARGE: JobSpec(
            check_auto_recharge,
            timeout=timedelta(seconds=60),
            max_tries=1,  # the next check is the retry; the rule's lock makes two at once safe
            cron=f"*/{settings.auto_recharge_check_seconds} * * * * * *",
            unique=False,
        ),
        JobName.SETTLE_USAGE: JobSpec(
            settle_usage,
            timeout=timedelta(seconds=60),
            max_tries=1,  # the next pass is the retry, and settles the same seconds
            cron=f"*/{settings.metering_interval_seconds} * * * * * *",
            unique=False,
        ),
        JobName.SWEEP_CREDIT_CAPS: JobSpec(
            sweep_credit_caps,
            timeout=timedelta(seconds=60),
            max_tries=1,
            cron=f"*/{settings.credit_cap_sweep_seconds} * * * * * *",
            unique=False,
        ),
        JobName.SWEEP_INSTANCES: JobSpec(
            sweep_instances,
            timeout=timedelta(seconds=60),
            max_tries=1,
            cron=f"*/{settings.instance_sweep_seconds} * * * * * *",
        ),
        JobName.SWEEP_UNPROCESSED_EVENTS: JobSpec(
            sweep_unprocessed_events,
            timeout=timedelta(seconds=60),
            max_tries=1,
            cron=f"*/{settings.event_sweep_seconds} * * * * * *",
        ),
        JobName.RECONCILE_PENDING_ORDERS: JobSpec(
            reconcile_pending_orders,
            timeout=timedelta(minutes=5),
            max_tries=1,
            cron="0 * * * * * *",  # every minute
        ),
        JobName.VERIFY_CREDIT_LEDGER: JobSpec(
            verify_credit_ledger,
            timeout=timedelta(minutes=10),
            max_tries=3,  # a failed check is tried again today, not tomorrow
            cron="0 30 4 * * * *",  # daily, 04:30:00 UTC
        ),
        JobName.EXPIRE_CREDIT_GRANTS: JobSpec(
            expire_credit_grants,
            timeout=timedelta(minutes=1),
            max_tries=1,  # the next minute is the retry
            cron="30 * * * * * *",  # every minute, at its 30th second
        ),
        JobName.SEND_RUNWAY_ALERTS: JobSpec(
            send_runway_alerts,
            timeout=timedelta(minutes=1),
            max_tries=1,  # the next minute is the retry: what it would send is still due
            cron="15 * * * * * *",  # every minute, at its 15th second
        ),
        JobName.SEND_EXPIRY_WARNINGS: JobSpec(
            send_expiry_warnings,
            timeout=timedelta(minutes=1),
            max_tries=1,  # the next minute is the retry: a warning still due is still found
            cron="50 * * * * * *",  # every minute, at its 50th second
        ),
        JobName.ISSUE_MONTHLY_STATEMENTS: JobSpec(
            issue_monthly_statements,
            timeout=timedelta(minutes=10),
            max_tries=3,
            # Daily at 00:10 UTC: on the 1st the month before has ended and the settlement
            # passes have posted its last usage; the other days' runs find nothing missing.
            cron="0 10 0 * * * *",
        ),
    }
