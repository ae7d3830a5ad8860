"""Metrics on a fresh registry: values read back with get_sample_value, and promtool's lint passes."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry

import autoscaler
from autoscaler import model
from autoscaler.telemetry import groups, metrics
from tests.telemetry.samples import populate


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def m(registry: CollectorRegistry) -> metrics.Metrics:
    return metrics.Metrics(registry)


def test_group_snapshot_is_exported_at_scrape_time(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    populate(m)
    get = registry.get_sample_value
    assert get("autoscaler_group_current_instances", {"group": "web"}) == 4
    assert get("autoscaler_group_ready_instances", {"group": "web"}) == 3
    assert get("autoscaler_group_desired_instances", {"group": "web"}) == 6
    assert get("autoscaler_group_max_instances", {"group": "web"}) == 12
    assert get("autoscaler_group_instances", {"group": "web", "state": "booting"}) == 1
    assert get("autoscaler_group_instances", {"group": "web", "state": "draining"}) == 1
    assert get("autoscaler_group_state", {"group": "web", "state": "cooldown"}) == 1
    assert get("autoscaler_group_state", {"group": "web", "state": "idle"}) == 0
    assert get("autoscaler_group_cooldown_remaining_seconds", {"group": "web"}) == 42
    assert get("autoscaler_group_last_evaluation_timestamp_seconds", {"group": "web"}) == 1e9


def test_publish_replaces_and_forget_removes(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    m.publish("web", groups.GroupSnapshot(current=1, ready=1, desired=1, min=1, max=3))
    m.publish("web", groups.GroupSnapshot(current=2, ready=1, desired=3, min=1, max=3, state="scaling"))
    assert registry.get_sample_value("autoscaler_group_current_instances", {"group": "web"}) == 2
    m.forecast("web", 5.0)
    m.forget("web")
    assert registry.get_sample_value("autoscaler_group_current_instances", {"group": "web"}) is None
    assert registry.get_sample_value("autoscaler_forecast_predicted", {"group": "web"}) is None
    m.forget("never-published")


def test_a_published_group_exports_its_operation_histograms_at_zero(
    registry: CollectorRegistry, m: metrics.Metrics
) -> None:
    """So that `rate()` sees the first clone and the first destroy as an increase from zero."""
    get = registry.get_sample_value
    assert get("autoscaler_destroy_duration_seconds_count", {"group": "web"}) is None
    m.publish("web", groups.GroupSnapshot(current=1, ready=1, desired=1, min=1, max=3))
    assert get("autoscaler_clone_duration_seconds_count", {"group": "web"}) == 0
    assert get("autoscaler_destroy_duration_seconds_count", {"group": "web"}) == 0
    m.destroyed("web", 0.4)
    m.publish("web", groups.GroupSnapshot(current=0, ready=0, desired=0, min=0, max=3))
    assert get("autoscaler_destroy_duration_seconds_count", {"group": "web"}) == 1


def test_forget_drops_every_series_of_the_group_and_only_those(
    registry: CollectorRegistry, m: metrics.Metrics
) -> None:
    for group in ("web", "api"):
        m.evaluated(group, "ok", 0.1)
    m.forget("web")
    get = registry.get_sample_value
    assert get("autoscaler_evaluations_total", {"group": "web", "result": "ok"}) is None
    assert get("autoscaler_evaluations_total", {"group": "api", "result": "ok"}) == 1


def test_unknown_group_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown group state"):
        groups.GroupSnapshot(current=1, ready=1, desired=1, min=1, max=1, state="sleeping")


def test_decision_counts_direction_reason_and_clipping_stages(
    registry: CollectorRegistry, m: metrics.Metrics
) -> None:
    populate(m)
    get = registry.get_sample_value
    assert get("autoscaler_decisions_total", {"group": "web", "direction": "up", "reason": "rate_limit"}) == 1
    assert get("autoscaler_decision_clipped_total", {"group": "web", "stage": "rate_limit"}) == 1
    assert get("autoscaler_decision_clipped_total", {"group": "web", "stage": "propose"}) is None


@pytest.mark.parametrize(
    ("trail", "expected"),
    [
        ((), "checks"),
        ((model.Stage("combine", 4, 6, "cpu"), model.Stage("tolerance", 6, 6, "x")), "checks"),
        ((model.Stage("combine", 4, 9, "cpu"), model.Stage("cooldown", 9, 4, "2m more")), "cooldown"),
        ((model.Stage("schedule", 4, 8, "office"), model.Stage("capacity", 8, 6, "full")), "capacity"),
    ],
)
def test_decision_reason_label_is_the_stage_that_shaped_the_count(
    trail: tuple[model.Stage, ...], expected: str
) -> None:
    decision = model.Decision(
        "web", 1e9, 4, 6, (), trail, reason="scale up 4 -> 6 (cpu: ceil(4 * 0.9 / 0.6) = 6)"
    )
    assert metrics.decision_reason(decision) == expected


def test_unbounded_values_collapse_to_other(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    m.replaced("web", "Domain web-7f3a (uuid 1234...) crashed: Input/output error")
    assert (
        registry.get_sample_value("autoscaler_replacements_total", {"group": "web", "reason": "other"}) == 1
    )


@pytest.mark.parametrize(
    ("result", "error_class", "expected"),
    [
        (model.ScaleResult(done=("a",)), None, "success"),
        (model.ScaleResult(done=("a",), failed=1), None, "partial"),
        (model.ScaleResult(failed=2), None, "failure"),
        (model.ScaleResult(), None, "noop"),
        (None, "temporary", "error"),
    ],
)
def test_scale_outcome(result: model.ScaleResult | None, error_class: str | None, expected: str) -> None:
    assert metrics.scale_outcome(result, error_class) == expected


def test_scaled_counts_operations_and_instances(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    populate(m)
    get = registry.get_sample_value
    assert (
        get("autoscaler_scale_operations_total", {"group": "web", "direction": "up", "result": "partial"})
        == 1
    )
    assert get("autoscaler_scale_instances_total", {"group": "web", "direction": "up", "result": "ok"}) == 2
    assert (
        get("autoscaler_scale_instances_total", {"group": "web", "direction": "up", "result": "failed"}) == 1
    )


def test_observer_and_source_metrics(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    populate(m)
    get = registry.get_sample_value
    assert get("autoscaler_libvirt_errors_total", {"op": "define", "error_class": "temporary"}) == 1
    assert get("autoscaler_libvirt_call_duration_seconds_count", {"op": "define"}) == 1
    assert get("autoscaler_libvirt_reconnects_total") == 1
    assert get("autoscaler_capacity_refusals_total", {"group": "web"}) == 1
    assert (
        get(
            "autoscaler_provision_phase_duration_seconds_bucket",
            {"group": "web", "phase": "overlay", "le": "0.5"},
        )
        == 1
    )
    assert get("autoscaler_source_errors_total", {"source": "prometheus", "error_class": "unavailable"}) == 1
    assert (
        get("autoscaler_check_inputs_total", {"group": "web", "check": "rps_per_vm", "result": "missing"})
        == 1
    )
    assert get("autoscaler_forecast_error_ratio", {"group": "web"}) == pytest.approx(0.2)


def test_clone_buckets_span_5ms_to_600s(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    m.cloned("web", 599.0)
    get = registry.get_sample_value
    assert get("autoscaler_clone_duration_seconds_bucket", {"group": "web", "le": "0.005"}) == 0
    assert get("autoscaler_clone_duration_seconds_bucket", {"group": "web", "le": "600.0"}) == 1


def test_policy_errors_gauge_is_replaced_per_reload(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    m.policy_load_errors({"a.yaml": 2, "b.yaml": 1})
    m.policy_load_errors({"b.yaml": 3, "c.yaml": 0})
    get = registry.get_sample_value
    assert get("autoscaler_policy_load_errors", {"file": "a.yaml"}) is None
    assert get("autoscaler_policy_load_errors", {"file": "b.yaml"}) == 3
    assert get("autoscaler_policy_load_errors", {"file": "c.yaml"}) is None
    m.policy_reloaded("error", at=5.0)
    assert get("autoscaler_policy_last_reload_success_timestamp_seconds") == 0
    m.policy_reloaded("ok", at=5.0)
    assert get("autoscaler_policy_last_reload_success_timestamp_seconds") == 5.0


def test_build_info(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    labels = {"version": autoscaler.__version__}
    samples = [s for f in registry.collect() for s in f.samples if s.name == "autoscaler_build_info"]
    assert len(samples) == 1
    assert labels.items() <= samples[0].labels.items()


def test_every_name_is_prefixed(m: metrics.Metrics) -> None:
    populate(m)
    text = m.exposition().decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert len(names) >= 30
    assert all(name.startswith("autoscaler_") for name in names)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_check_metrics_passes(m: metrics.Metrics) -> None:
    populate(m)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=m.exposition(), capture_output=True, check=False, timeout=60
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode().strip() == ""


def test_pooled_and_unmanaged_instances(registry: CollectorRegistry, m: metrics.Metrics) -> None:
    inventory = model.GroupInventory("web", (), pooled=2)
    m.publish("web", groups.GroupSnapshot.of(inventory, desired=0, low=0, high=4, state="idle"))
    assert registry.get_sample_value("autoscaler_group_pooled_instances", {"group": "web"}) == 2
    counts = {"old-group": 3}
    m.watch_unmanaged(lambda: counts)
    assert registry.get_sample_value("autoscaler_unmanaged_instances", {"group": "old-group"}) == 3
    counts.clear()  # read at scrape time: the group's domains were removed by hand
    assert registry.get_sample_value("autoscaler_unmanaged_instances", {"group": "old-group"}) is None


def test_coordination_exports_etcd_requests_and_watch_breaks(
    registry: CollectorRegistry, m: metrics.Metrics
) -> None:
    populate(m)
    get = registry.get_sample_value
    assert get("autoscaler_coordination_etcd_requests_total", {"path": "/v3/kv/txn"}) == 40
    assert get("autoscaler_coordination_watch_reconnects_total", {"watch": "leader_key"}) == 2
    assert get("autoscaler_coordination_watch_compactions_total", {"watch": "pauses"}) == 1
    assert get("autoscaler_coordination_fenced_actions_total", {"op": "define"}) == 1
