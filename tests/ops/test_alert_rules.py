"""deploy/prometheus/alerts.yml: promtool finds the rules valid and their unit tests
(alerts_test.yml) pass; and every metric they name is one the app exports, so rules and code
cannot drift apart."""

from __future__ import annotations

from computebill.config import Settings
from tests.ops.monitoring import DEPLOY, exported_families, metrics_used, promtool, unexported

RULES = DEPLOY / "prometheus"


def test_promtool_finds_the_rules_valid() -> None:
    checked = promtool("check", "rules", "alerts.yml", cwd=RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", "alerts_test.yml", cwd=RULES)
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


async def test_every_metric_the_rules_use_is_exported(settings: Settings) -> None:
    used = metrics_used(_expressions())
    assert len(used) >= 10
    assert unexported(used, await exported_families(settings)) == set()
