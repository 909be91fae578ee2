"""deploy/grafana: the dashboard is one Grafana provisions (a uid, panels with queries on the
provisioned data source, on its 24-column grid), every query is valid PromQL (promtool parses
them as recording rules), and every metric it names is one the platform exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from computebill.config import Settings
from tests.ops.monitoring import DEPLOY, exported_families, metrics_used, promtool, unexported

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "computebill.json"
# Grafana's own variables, as Prometheus would receive them.
GRAFANA_RANGES = {"$__rate_interval": "1m", "$__range": "6h"}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    """Every panel but the rows, those inside a collapsed row included."""
    found: list[dict[str, Any]] = []
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def _expressions() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def _provisioned_datasource_uid() -> str:
    provisioning = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uids = re.findall(r"^\s+uid: (\S+)$", provisioning, re.MULTILINE)
    assert len(uids) == 1, provisioning
    return str(uids[0])


def test_the_dashboard_is_one_grafana_provisions() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "computebill"
    assert dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = {"type": "prometheus", "uid": _provisioned_datasource_uid()}
    panels = _panels()
    assert len(panels) >= 15
    for panel in panels:
        grid = panel["gridPos"]
        assert min(grid["w"], grid["h"]) >= 1, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for number, expr in enumerate(_expressions()):
        for variable, value in GRAFANA_RANGES.items():
            expr = expr.replace(variable, value)
        rules += [f"      - record: panel_query_{number}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "queries.yml").write_text("\n".join(rules) + "\n")
    checked = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_quantiles_keep_the_buckets_apart() -> None:
    quantiles = [expr for expr in _expressions() if "histogram_quantile" in expr]
    assert len(quantiles) >= 6
    for expr in quantiles:
        assert re.search(r"sum by \([\w, ]*\ble\)", expr), expr


async def test_every_metric_the_dashboard_uses_is_exported(settings: Settings) -> None:
    used = metrics_used(_expressions())
    assert {
        "computebill_payments_total",
        "computebill_payment_cents_total",
        "computebill_refunds_total",
        "computebill_refund_cents_total",
        "computebill_webhook_processing_lag_seconds_bucket",
        "computebill_stripe_events",
        "computebill_stripe_event_oldest_pending_age_seconds",
        "computebill_queue_depth",
        "computebill_jobs_total",
        "computebill_instances",
        "computebill_instances_stopped_for_credit_total",
        "computebill_metering_lag_seconds",
        "computebill_http_request_duration_seconds_bucket",
    } <= used
    assert unexported(used, await exported_families(settings)) == set()
