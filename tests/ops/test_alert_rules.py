"""deploy/prometheus/alerts.yml: promtool finds the rules valid and their unit tests
(alerts_test.yml) pass; and every metric they name is one the app exports, so rules and code
cannot drift apart."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from computebill.config import Settings
from computebill.devserver.scratch import database
from computebill.ops.jobs import record_metrics_snapshot
from tests.support.http import in_process
from tests.support.jobs import RecordingPublisher, job_context

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
# What a counter's or histogram's family adds to its name in a sample.
SAMPLE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `apt-get install prometheus` (Debian) has it")
    return subprocess.run(
        [promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_finds_the_rules_valid() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    tested = _promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _expressions() -> list[str]:
    """Each rule's `expr`: its line, and the lines indented under it (a folded one)."""
    found: list[str] = []
    indent: int | None = None
    for line in (RULES / "alerts.yml").read_text().splitlines():
        depth = len(line) - len(line.lstrip())
        if indent is not None and line.strip() and depth > indent:
            found[-1] += " " + line.strip()
            continue
        indent = None
        if line.lstrip().startswith("expr:"):
            indent = depth
            found.append(line.strip().removeprefix("expr:"))
    return found


def _metrics_the_rules_use() -> set[str]:
    return {name for expr in _expressions() for name in re.findall(r"\bcomputebill_\w+", expr)}


def _family(sample_name: str, families: set[str]) -> bool:
    if sample_name in families:
        return True
    return any(
        sample_name.endswith(suffix) and sample_name.removesuffix(suffix) in families
        for suffix in SAMPLE_SUFFIXES
    )


async def test_every_metric_the_rules_use_is_exported(settings: Settings) -> None:
    async with database(settings) as sessions:
        await record_metrics_snapshot(job_context(settings, sessions, RecordingPublisher()))
    async with in_process(settings) as http:
        scraped = (await http.get("/metrics")).text
    families = set(re.findall(r"^# TYPE (\S+) ", scraped, re.MULTILINE))
    used = _metrics_the_rules_use()
    assert len(used) >= 10
    assert {name for name in used if not _family(name, families)} == set()
