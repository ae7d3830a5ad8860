"""Reloads never make things worse: a rejected file keeps its last good groups, a removed one drops them."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from autoscaler.engine import policies
from autoscaler.policy import files
from autoscaler.telemetry import metrics
from tests import fakes

GOOD = "group: {name}\ngolden: g.qcow2\ntemplate: t\nmin: 1\nmax: {max}\n"


def _watcher(
    directory: Path, seen: list[dict[str, files.LoadedGroup]], sources: list[str] | None = None
) -> policies.Watcher:
    registry = metrics.Metrics(CollectorRegistry())
    return policies.Watcher([directory], seen.append, registry, fakes.FakeClock(), sources=sources)


def test_a_bad_edit_keeps_the_last_good_version(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(GOOD.format(name="web", max=5))
    (tmp_path / "db.yaml").write_text(GOOD.format(name="db", max=3))
    seen: list[dict[str, files.LoadedGroup]] = []
    watcher = _watcher(tmp_path, seen)
    assert watcher.load().result == "ok"
    (tmp_path / "web.yaml").write_text(GOOD.format(name="web", max="five"))
    (tmp_path / "db.yaml").write_text(GOOD.format(name="db", max=4))
    reload = watcher.load()
    assert reload.result == "partial"
    assert reload.groups["web"].policy.max == 5
    assert reload.groups["db"].policy.max == 4
    assert list(reload.problems) == [str(tmp_path / "web.yaml")]
    registry = watcher.metrics.registry
    assert (
        registry.get_sample_value("autoscaler_policy_load_errors", {"file": str(tmp_path / "web.yaml")}) == 1
    )


def test_a_removed_file_drops_its_groups(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(GOOD.format(name="web", max=5))
    seen: list[dict[str, files.LoadedGroup]] = []
    watcher = _watcher(tmp_path, seen)
    watcher.load()
    (tmp_path / "web.yaml").unlink()
    assert watcher.load().groups == {}
    assert seen[-1] == {}


def test_the_fingerprint_changes_with_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(GOOD.format(name="web", max=5))
    before = policies.fingerprint([tmp_path])
    path.write_text(GOOD.format(name="web", max=50))
    assert policies.fingerprint([tmp_path]) != before


def test_the_fingerprint_sees_a_same_size_edit_within_one_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(GOOD.format(name="web", max=5))
    stamp = path.stat().st_mtime_ns
    before = policies.fingerprint([tmp_path])
    path.write_text(GOOD.format(name="web", max=6))
    os.utime(path, ns=(stamp, stamp))  # the same size and mtime: only the content differs
    assert policies.fingerprint([tmp_path]) != before


def test_a_new_file_repeating_a_group_is_rejected_and_the_owner_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(
        GOOD.format(name="web", max=12) + "---\n" + GOOD.format(name="api", max=4)
    )
    seen: list[dict[str, files.LoadedGroup]] = []
    watcher = _watcher(tmp_path, seen)
    watcher.load()
    canary = tmp_path / "00-canary.yaml"
    canary.write_text(GOOD.format(name="web", max=2))
    reload = watcher.load()
    assert reload.result == "partial"
    assert {n: (Path(g.file).name, g.policy.max) for n, g in reload.groups.items()} == {
        "web": ("web.yaml", 12),
        "api": ("web.yaml", 4),
    }
    assert list(reload.problems) == [str(canary)]
    (problem,) = reload.problems[str(canary)]
    assert str(problem).startswith(f"{canary}:1:1:")
    assert f"{tmp_path / 'web.yaml'}:1" in str(problem)
    (tmp_path / "web.yaml").write_text(GOOD.format(name="web", max=13))
    assert watcher.load().groups["web"].policy.max == 13
    canary.write_text(GOOD.format(name="web-canary", max=2))
    assert set(watcher.load().groups) == {"web", "web-canary"}


def test_a_group_moved_to_another_file_follows_it(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(GOOD.format(name="web", max=5))
    seen: list[dict[str, files.LoadedGroup]] = []
    watcher = _watcher(tmp_path, seen)
    watcher.load()
    (tmp_path / "web.yaml").unlink()
    (tmp_path / "frontend.yaml").write_text(GOOD.format(name="web", max=6))
    reload = watcher.load()
    assert reload.result == "ok"
    assert Path(reload.groups["web"].file).name == "frontend.yaml"


CHECKED = (
    GOOD
    + "checks:\n  - name: cpu\n    source: {source}\n    query: avg(cpu)\n"
    + ("    strategy: {{kind: target_tracking, target: 0.7}}\n")
)


def test_a_check_naming_an_unconfigured_source_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(CHECKED.format(name="web", max=5, source="prometheus"))
    seen: list[dict[str, files.LoadedGroup]] = []
    watcher = _watcher(tmp_path, seen, sources=["prometheus", "libvirt"])
    assert watcher.load().result == "ok"
    path.write_text(CHECKED.format(name="web", max=6, source="promethues"))
    with capture_logs() as logs:
        reload = watcher.load()
    assert reload.result == "partial"
    assert reload.groups["web"].policy.max == 5
    expected = (
        f"{path}:8:13: checks[0].source: unknown metric source 'promethues'"
        " (configured: prometheus, libvirt); did you mean 'prometheus'?"
    )
    assert [str(p) for p in reload.problems[str(path)]] == [expected]
    (rejected,) = [entry for entry in logs if entry["event"] == "policy_rejected"]
    assert rejected["problems"] == [expected]
    assert rejected["kept"] == ["web"]
    registry = watcher.metrics.registry
    assert registry.get_sample_value("autoscaler_policy_load_errors", {"file": str(path)}) == 1


def test_an_active_forecast_from_an_unconfigured_source_is_rejected(tmp_path: Path) -> None:
    predictive = "predictive: {{mode: {mode}, query: sum(load), source: history}}\n"
    path = tmp_path / "web.yaml"
    path.write_text(CHECKED.format(name="web", max=5, source="libvirt") + predictive.format(mode="'off'"))
    watcher = _watcher(tmp_path, [], sources=["libvirt"])
    assert watcher.load().result == "ok"
    path.write_text(CHECKED.format(name="web", max=5, source="libvirt") + predictive.format(mode="shadow"))
    (problem,) = watcher.load().problems[str(path)]
    assert (problem.line, problem.path) == (11, "predictive.source")
    assert "unknown metric source 'history' (configured: libvirt)" in problem.message


def test_without_configured_sources_any_name_loads(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(CHECKED.format(name="web", max=5, source="anything"))
    assert set(_watcher(tmp_path, []).load().groups) == {"web"}
