"""The deploy assets agree with the daemon: Prometheus accepts them and they only name real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from autoscaler.telemetry import metrics
from tests.telemetry.samples import populate

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC_NAME = re.compile(r"\bautoscaler_[a-z0-9_]+")
SERIES_SUFFIXES = ("_bucket", "_count", "_sum")

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is absent (Debian: prometheus)"
)


def promtool(*args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def exported_names() -> set[str]:
    """Every family name the daemon exports, once every metric has a value."""
    m = metrics.Metrics(CollectorRegistry())
    populate(m)
    text = m.exposition().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")} | {
        "autoscaler_build_info"
    }


def family(series_name: str) -> str:
    for suffix in SERIES_SUFFIXES:
        if series_name.endswith(suffix):
            return series_name.removesuffix(suffix)
    return series_name


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@needs_promtool
def test_alert_rules_pass_promtool() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_scrape_config_passes_promtool() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, parses as a recording rule."""
    filled = [
        expr.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$group", ".*")
        for expr in dashboard_expressions()
    ]
    rules = [{"record": f"dashboard:query{i}", "expr": expr} for i, expr in enumerate(filled)]
    (tmp_path / "dashboard.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("asset", ["alerts.yml", "grafana-dashboard.json"])
def test_assets_only_name_exported_metrics(asset: str) -> None:
    named = {family(name) for name in METRIC_NAME.findall((DEPLOY / asset).read_text())}
    assert named, asset
    assert named <= exported_names(), named - exported_names()


def test_dashboard_shows_what_operators_need() -> None:
    text = " ".join(dashboard_expressions())
    for name in (
        "autoscaler_group_current_instances",
        "autoscaler_group_ready_instances",
        "autoscaler_group_desired_instances",
        "autoscaler_decisions_total",
        "autoscaler_scale_operations_total",
        "autoscaler_clone_duration_seconds_bucket",
        "autoscaler_source_errors_total",
        "autoscaler_event_loop_lag_seconds_bucket",
    ):
        assert name in text, name


def test_alerts_cover_the_failure_modes() -> None:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert {
        "AutoscalerDown",
        "AutoscalerEvaluationsFailing",
        "AutoscalerPolicyReloadFailed",
        "AutoscalerCapacityRefusals",
        "AutoscalerGroupAtMax",
        "AutoscalerScaleErrors",
    } <= names
    assert all(rule["labels"]["severity"] in ("info", "warning", "critical") for rule in rules)
