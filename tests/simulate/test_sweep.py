"""`simulate --sweep`: the policy and the peers at several target utilisations, as a cost/service frontier."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from autoscaler import simulate
from autoscaler.policy import spec
from autoscaler.simulate import cli, metrics, sweep
from tests.simulate.helpers import make_trace, policy
from tests.simulate.test_cli import files  # noqa: F401  (fixture)


@pytest.mark.parametrize(
    ("text", "expected"), [("0.5,0.6,0.7", (0.5, 0.6, 0.7)), ("70, 50", (0.5, 0.7)), ("1", (1.0,))]
)
def test_targets_are_fractions_or_percents(text: str, expected: tuple[float, ...]) -> None:
    assert sweep.parse_targets(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["0", "-0.2", "120", "x"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="target utilisation"):
        sweep.parse_targets(text)


def test_retarget_moves_every_share_with_the_target() -> None:
    sessions = spec.Check(
        name="sessions",
        source="p",
        query="q",
        strategy=spec.PerInstance(kind="per_instance", per_instance=70.0),
    )
    percent = spec.Check(
        name="cpu", source="p", query="q", strategy=spec.TargetTracking(kind="target_tracking", target=70)
    )
    base = policy(checks=(percent, sessions), predictive=spec.Predictive(per_instance=70.0))
    moved = sweep.retarget(base, 0.5, 100.0)
    assert moved.checks[0].strategy == spec.TargetTracking(kind="target_tracking", target=50.0)
    assert moved.checks[1].strategy == spec.PerInstance(kind="per_instance", per_instance=50.0)
    assert moved.predictive.per_instance == pytest.approx(50.0)


def test_interpolation_follows_the_frontier_and_refuses_to_extrapolate() -> None:
    line = [
        sweep.Point("hpa", 0.5, {"instance_hours": 100.0, "slo_violation_minutes": 10.0}),
        sweep.Point("hpa", 0.8, {"instance_hours": 60.0, "slo_violation_minutes": 50.0}),
    ]
    assert sweep.interpolate(line, 80.0) == pytest.approx(30.0)
    assert sweep.interpolate(line, 120.0) is None


def test_a_sweep_judges_every_controller_at_every_target_on_the_chosen_half() -> None:
    trace = make_trace(([100.0] * 30 + [500.0] * 30) * 4)
    points = sweep.run(
        trace, policy(), simulate.Setup(capacity=100.0), (0.5, 0.8), ("hpa",), window="second-half"
    )
    assert [(p.name, p.target) for p in points] == [
        ("policy", 0.5),
        ("hpa", 0.5),
        ("policy", 0.8),
        ("hpa", 0.8),
    ]
    assert all(p.figures["steps"] == 120 for p in points)
    ours = [p for p in points if p.name == "policy"]
    assert ours[0].instance_hours > ours[1].instance_hours  # more headroom costs more
    assert all(p.over_provisioned is not None for p in ours)
    row = sweep.compare(points)[0]
    assert row["target"] == 0.5
    assert set(row["hpa"]) >= {
        "instance_hours_ratio",
        "slo_minutes_ratio",
        "slo_minutes_at_our_instance_hours",
    }


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_sweep_from_the_command_line_writes_json_and_the_frontier_plot(
    files: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy_file, trace = files
    out, png = tmp_path / "sweep.json", tmp_path / "frontier.png"
    argv = ["simulate", "--policy", str(policy_file), "--trace", str(trace), "--capacity-per-instance", "20"]
    args = _parse(
        [*argv, "--sweep", "60,80", "--baseline", "hpa", "--json", str(out), "--frontier-plot", str(png)]
    )
    assert args.func(args) == 0
    report = json.loads(out.read_text())
    assert {(p["run"], p["target"]) for p in report["points"]} == {
        (name, target) for name in ("policy", "hpa") for target in (0.6, 0.8)
    }
    assert len(report["comparison"]) == 2
    assert "hpa SLO min at our inst-h" in capsys.readouterr().out
    assert png.stat().st_size > 10_000


def test_frontier_plot_needs_a_sweep(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    policy_file, trace = files
    argv = ["simulate", "--policy", str(policy_file), "--trace", str(trace), "--capacity-per-instance", "20"]
    args = _parse([*argv, "--frontier-plot", "x.png"])
    assert args.func(args) == 2
    assert "--frontier-plot needs --sweep" in capsys.readouterr().err


def test_halves_split_the_rows_in_time() -> None:
    trace = make_trace([1.0] * 10 + [None] * 5 + [1.0] * 5)
    halves = metrics.halves(trace)
    assert int(halves["first-half"].sum()) + int(halves["second-half"].sum()) == 15
    assert not (halves["first-half"] & halves["second-half"]).any()
    assert trace.times[halves["second-half"]].min() > trace.times[halves["first-half"]].max()


def test_peers_may_run_at_further_targets_to_widen_their_frontier() -> None:
    jobs = sweep.jobs_for(policy(), simulate.Setup(100.0), (0.7,), ("hpa",), peer_targets=(0.5, 0.7))
    assert [(j.name, j.target) for j in jobs] == [("hpa", 0.5), ("policy", 0.7), ("hpa", 0.7)]
    points = [
        sweep.Point("policy", 0.7, {"instance_hours": 80.0, "slo_violation_minutes": 30.0, "morning": {}}),
        sweep.Point("hpa", 0.5, {"instance_hours": 100.0, "slo_violation_minutes": 10.0}),
        sweep.Point("hpa", 0.7, {"instance_hours": 60.0, "slo_violation_minutes": 50.0}),
    ]
    hpa = sweep.compare(points)[0]["hpa"]
    assert isinstance(hpa, dict)
    assert hpa["slo_minutes_at_our_instance_hours"] == pytest.approx(30.0)
    assert hpa["instance_hours_at_our_slo_minutes"] == pytest.approx(80.0)
    assert hpa["instance_hours_ratio"] == pytest.approx(80.0 / 60.0)
