"""What the tests of deploy/prometheus and deploy/grafana share: promtool, the metric names
PromQL expressions use, and the metric families the platform exports, so a rule or a panel that
names a metric the code does not export fails."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from computebill.config import Settings
from computebill.devserver.scratch import database
from computebill.ops.jobs import record_metrics_snapshot
from tests.support.http import in_process
from tests.support.jobs import RecordingPublisher, job_context

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# What a counter's or histogram's family adds to its name in a sample.
SAMPLE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `apt-get install prometheus` (Debian) has it")
    return subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def metrics_used(expressions: Iterable[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\bcomputebill_\w+", expr)}


def _family(sample_name: str, families: set[str]) -> bool:
    if sample_name in families:
        return True
    return any(
        sample_name.endswith(suffix) and sample_name.removesuffix(suffix) in families
        for suffix in SAMPLE_SUFFIXES
    )


async def exported_families(settings: Settings) -> set[str]:
    """Every family an app's /metrics declares, the worker snapshot's gauges included (one
    registry module holds the app's metrics and the worker's job counters alike)."""
    async with database(settings) as sessions:
        await record_metrics_snapshot(job_context(settings, sessions, RecordingPublisher()))
    async with in_process(settings) as http:
        scraped = (await http.get("/metrics")).text
    return set(re.findall(r"^# TYPE (\S+) ", scraped, re.MULTILINE))


def unexported(used: set[str], families: set[str]) -> set[str]:
    """The names in `used` that are no sample of any family in `families`."""
    return {name for name in used if not _family(name, families)}
