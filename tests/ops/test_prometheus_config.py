"""deploy/prometheus/prometheus.yml: promtool finds the configuration valid (its rule files
included), and it scrapes both apps with the metrics token and both workers, in jobs AppDown
reads."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.ops.monitoring import DEPLOY, promtool

PROMETHEUS = DEPLOY / "prometheus"
TOKEN_FILE = "/run/secrets/metrics_token"


def test_promtool_finds_the_configuration_valid(tmp_path: Path) -> None:
    # promtool also wants the token file to exist: the directory copied, the path made a file
    # of the copy's own.
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert config.count(TOKEN_FILE) == 1
    token = tmp_path / "metrics_token"
    token.write_text("a-metrics-token\n")
    (tmp_path / "prometheus.yml").write_text(config.replace(TOKEN_FILE, str(token)))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path)
    checked = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout, checked.stdout


def test_it_scrapes_both_apps_and_both_workers_in_jobs_appdown_reads() -> None:
    config = (PROMETHEUS / "prometheus.yml").read_text()
    jobs = re.findall(r"job_name: (\S+)", config)
    assert jobs == ["computebill-app", "computebill-worker"]
    targets = re.findall(r'"([\w-]+:\d+)"', config)
    assert targets == ["app-1:8000", "app-2:8000", "worker-1:9101", "worker-2:9101"]
    assert re.search(r"up\{job=~\"computebill\.\*\"\}", (PROMETHEUS / "alerts.yml").read_text())
