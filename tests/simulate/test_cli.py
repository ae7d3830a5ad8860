"""`autoscaler simulate` end to end on a generated trace and policy file."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pytest

from autoscaler.simulate import cli

POLICY = """\
group: web
golden: /var/lib/autoscaler/golden/web.qcow2
template: web-template
min: 1
max: 40
evaluation_interval: 30s
warmup: 60s
checks:
  - name: cpu
    source: prometheus
    query: avg(cpu)
    strategy: {kind: target_tracking, target: 0.7}
predictive:
  mode: active
  query: sum(rate(http_requests_total[1m]))
warm_pool:
  size: 2
  state: paused
"""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "web.yaml"
    policy.write_text(POLICY)
    trace = tmp_path / "load.csv"
    lines = ["timestamp,value"]
    for day in range(1, 4):  # Mon 1 - Wed 3 January 2024, five-minute rows, a 07:00-12:00 plateau
        for minute in range(0, 1440, 5):
            value = 300.0 if 7 * 60 <= minute < 12 * 60 else 40.0
            if not (day == 2 and 480 <= minute < 510):  # a half-hour gap on Tuesday morning
                lines.append(f"2024-01-0{day}T{minute // 60:02d}:{minute % 60:02d}:00+02:00,{value}")
    trace.write_text("\n".join(lines) + "\n")
    return policy, trace


def test_simulate_writes_figures_and_a_plot(files: tuple[Path, Path], tmp_path: Path) -> None:
    policy, trace = files
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    argv = ["simulate", "--policy", str(policy), "--group", "web", "--trace", str(trace)]
    argv += [
        "--capacity-per-instance",
        "20",
        "--boot-time",
        "60s",
        "--baseline",
        "hpa",
        "--baseline",
        "oracle",
    ]
    argv += ["--json", str(out), "--plot", str(png)]
    args = _parse(argv)
    assert args.func(args) == 0
    report = json.loads(out.read_text())
    keys = {"theta_u", "theta_o", "tau_u", "tau_o", "instability", "instance_hours", "slo_violation_minutes"}
    assert keys <= report.keys()
    assert keys <= report["morning"].keys()
    assert report["steps"] == 3 * 288 - 6
    assert report["morning"]["steps"] == 3 * 48 - 6  # the gap is inside Tuesday's morning
    assert set(report["baselines"]) == {"hpa", "oracle"}
    assert report["baselines"]["oracle"]["theta_u"] == 0.0
    assert report["forecast"]["mode"] == "active"
    assert report["instance_hours"] >= report["baselines"]["oracle"]["instance_hours"]
    assert png.stat().st_size > 10_000


def test_unknown_group_is_a_usage_error(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, trace = files
    args = _parse(["simulate", "--policy", str(policy), "--group", "db", "--trace", str(trace)])
    assert args.func(args) == 2
    assert "group 'db' not in the policy file" in capsys.readouterr().err


def test_a_plot_without_matplotlib_is_a_usage_error_before_the_replay(
    files: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The installed package has no matplotlib: --plot is refused at once, not with a traceback after."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without it looks like
    policy, trace = files
    png = tmp_path / "day.png"
    args = _parse(["simulate", "--policy", str(policy), "--trace", str(trace), "--plot", str(png)])
    assert args.func(args) == 2
    assert "--plot need matplotlib" in capsys.readouterr().err
    assert not png.exists()


def test_missing_capacity_without_sidecar_is_a_usage_error(files: tuple[Path, Path]) -> None:
    policy, trace = files
    args = _parse(["simulate", "--policy", str(policy), "--trace", str(trace)])
    assert args.func(args) == 2


def test_every_row_is_judged_against_the_policys_demand(files: tuple[Path, Path], tmp_path: Path) -> None:
    policy, trace = files
    policy.write_text(POLICY.replace("target: 0.7", "target: 0.5"))
    out = tmp_path / "out.json"
    argv = ["simulate", "--policy", str(policy), "--trace", str(trace), "--capacity-per-instance", "20"]
    args = _parse([*argv, "--baseline", "oracle", "--baseline", "hpa", "--json", str(out)])
    assert args.func(args) == 0
    report = json.loads(out.read_text())
    assert report["target_utilisation"] == 0.5
    assert "target_utilisation" in report["demand"]
    oracle = report["baselines"]["oracle"]
    assert (oracle["theta_u"], oracle["theta_o"]) == (0.0, 0.0)
    rows = [line.split(",") for line in trace.read_text().splitlines()[1:]]
    demand_hours = sum(math.ceil(float(value) / (20 * 0.5)) for _, value in rows) * 300 / 3600
    assert oracle["instance_hours"] >= demand_hours  # the oracle served the 50 % demand, not a 70 % one


TWO_GROUPS = "groups:\n" + "".join(
    "  - " + POLICY.replace("group: web", f"group: {name}").replace("\n", "\n    ").rstrip() + "\n"
    for name in ("web", "api")
)


def test_several_groups_and_no_group_option_name_them(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, trace = files
    policy.write_text(TWO_GROUPS)
    args = _parse(
        ["simulate", "--policy", str(policy), "--trace", str(trace), "--capacity-per-instance", "20"]
    )
    assert args.func(args) == 2
    assert capsys.readouterr().err == "simulate: --group is required (groups in the file: web, api)\n"


@pytest.mark.parametrize("capacity", ["0", "-5"])
def test_a_capacity_that_is_not_positive_is_a_usage_error(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], capacity: str
) -> None:
    policy, trace = files
    args = _parse(
        ["simulate", "--policy", str(policy), "--trace", str(trace), "--capacity-per-instance", capacity]
    )
    assert args.func(args) == 2
    assert capsys.readouterr().err == f"simulate: --capacity-per-instance must be > 0, got {capacity}\n"


def test_an_unusable_policy_or_trace_exits_1_like_check(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, trace = files
    options = ["--capacity-per-instance", "20"]
    missing = tmp_path / "absent.csv"
    args = _parse(["simulate", "--policy", str(policy), "--trace", str(missing), *options])
    assert args.func(args) == 1
    assert str(missing) in capsys.readouterr().err
    policy.write_text(POLICY.replace("max: 40", "max: forty"))
    args = _parse(["simulate", "--policy", str(policy), "--trace", str(trace), *options])
    assert args.func(args) == 1
    assert capsys.readouterr().err.startswith(f"{policy}:5:6: max: input should be a valid integer")


def test_a_trace_without_weekday_mornings_reports_them_as_not_available(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, trace = files
    evenings = [line for line in trace.read_text().splitlines() if "T1" in line or "T2" in line]
    trace.write_text("timestamp,value\n" + "\n".join(evenings) + "\n")  # only 10:00-23:55 rows
    out = tmp_path / "out.json"
    argv = ["simulate", "--policy", str(policy), "--trace", str(trace), "--capacity-per-instance", "20"]
    args = _parse([*argv, "--baseline", "hpa", "--json", str(out)])
    assert args.func(args) == 0
    report = json.loads(out.read_text())
    assert report["morning"]["steps"] == 0
    assert {k: v for k, v in report["morning"].items() if k != "steps"} == dict.fromkeys(cli.COLUMNS)
    assert report["baselines"]["hpa"]["morning"]["theta_u"] is None
    assert report["theta_u"] is not None
    mornings = [line for line in capsys.readouterr().out.splitlines() if "morning" in line]
    assert len(mornings) == 2
    assert all(line.count("n/a") == len(cli.COLUMNS) for line in mornings)


def test_a_redirected_table_is_never_cut_to_80_columns(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    policy, trace = files
    argv = ["simulate", "--policy", str(policy), "--trace", str(trace), "--capacity-per-instance", "20"]
    args = _parse([*argv, "--baseline", "oracle"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    header = next(line for line in out.splitlines() if "window" in line)
    assert [cli.HEADERS.get(c, c) in header for c in cli.COLUMNS] == [True] * len(cli.COLUMNS)
    assert max(len(line) for line in out.splitlines()) > 80
