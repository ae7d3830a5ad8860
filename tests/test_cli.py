"""The offline commands as an operator runs them: check, explain (text and JSON) and schema."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscaler import cli

ROOT = Path(__file__).resolve().parents[1]
WEBMAIL = str(ROOT / "policies" / "webmail.yaml")
WEDNESDAY_0900_BERLIN = "2026-11-25T09:00:00+01:00"


def write_values(tmp_path: Path, values: object) -> str:
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    return str(path)


def test_explain_prints_checks_stages_and_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = write_values(tmp_path, {"cpu": 0.9, "sessions": 4000})
    argv = ["explain", WEBMAIL, "--group", "webmail", "--current", "6", "--values", values]
    assert cli.main([*argv, "--at", WEDNESDAY_0900_BERLIN]) == 0
    out = capsys.readouterr().out
    assert "cpu" in out
    assert "sessions" in out
    assert "-> 16" in out  # sessions: ceil(4000 / 250)
    assert "rate_limit" in out  # +4 or +100 % per minute: at most 12
    assert "result: 12" in out
    assert "reason: scale up 6 -> 12" in out


def test_explain_json_is_the_machine_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = write_values(tmp_path, {"cpu": None, "sessions": {"value": 500, "age": "10m"}})
    argv = ["explain", WEBMAIL, "--group", "webmail", "--current", "10", "--values", values, "--json"]
    assert cli.main([*argv, "--at", "2026-11-25T03:00:00+01:00"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert [c["kind"] for c in decision["checks"]] == ["missing", "stale"]
    assert decision["desired"] >= 10  # missing data never shrinks the group


def test_explain_unknown_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", WEBMAIL, "--group", "nope", "--current", "1"]) == 1
    assert "no group 'nope'" in capsys.readouterr().err


def test_console_script_and_module_agree() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "autoscaler", "check", str(ROOT / "policies")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("ok: 3 groups")


SIMULATED_POLICY = """\
group: web
golden: /golden/web.qcow2
template: web-template
min: 1
max: 10
checks:
  - name: cpu
    source: prometheus
    query: avg(cpu)
    strategy: {kind: target_tracking, target: 0.7}
"""


def test_simulate_runs_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "web.yaml"
    policy.write_text(SIMULATED_POLICY)
    trace = tmp_path / "load.csv"
    rows = [
        f"2024-01-01T{hour:02d}:{minute:02d}:00Z,{40 + hour * 10}" for hour in range(6) for minute in (0, 30)
    ]
    trace.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = tmp_path / "figures.json"
    argv = ["simulate", "--policy", str(policy), "--trace", str(trace), "--capacity-per-instance", "20"]
    assert cli.main([*argv, "--baseline", "hpa", "--json", str(out), "--no-progress"]) == 0
    assert "decision quality" in capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert figures["group"] == "web"
    assert set(figures["baselines"]) == {"hpa"}


DEPLOY_CONFIG = str(ROOT / "deploy" / "autoscaler.yaml")


def test_the_examples_name_only_sources_the_shipped_config_defines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["check", "--config", DEPLOY_CONFIG, str(ROOT / "policies")]) == 0
    assert capsys.readouterr().out == ""


def test_check_with_config_refuses_an_unknown_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "web.yaml"
    policy.write_text(SIMULATED_POLICY.replace("source: prometheus", "source: promethues"))
    assert cli.main(["check", str(policy)]) == 0  # without the settings, any name may be defined
    capsys.readouterr()
    assert cli.main(["check", "--config", DEPLOY_CONFIG, str(policy)]) == 1
    assert capsys.readouterr().out == (
        f"{policy}:8:13: checks[0].source: unknown metric source 'promethues'"
        " (configured: prometheus, libvirt); did you mean 'prometheus'?\n"
    )


def test_explain_refuses_a_value_for_no_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = write_values(tmp_path, {"cpu": 0.5, "sesions": 4000})
    argv = ["explain", WEBMAIL, "--group", "webmail", "--current", "6", "--values", values]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"{values}: no check 'sesions' in group 'webmail' (checks: cpu, sessions); did you mean 'sessions'?\n"
    )


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (["--current", "-3"], "autoscaler explain: --current must be 0 or more, got -3\n"),
        (["--current", "6", "--ready", "-1"], "autoscaler explain: --ready must be 0 or more, got -1\n"),
        (["--current", "6", "--ready", "9"], "autoscaler explain: --ready (9) cannot exceed --current (6)\n"),
    ],
)
def test_explain_refuses_impossible_counts(
    counts: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["explain", WEBMAIL, "--group", "webmail", *counts]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message)


@pytest.fixture
def berlin_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is Europe/Berlin for the test, and restored after."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("berlin_machine")
def test_explain_reads_a_time_without_zone_as_utc(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["explain", WEBMAIL, "--group", "webmail", "--current", "6", "--json"]
    assert cli.main([*argv, "--at", "2026-11-25T09:00:00"]) == 0
    assert json.loads(capsys.readouterr().out)["at_iso"] == "2026-11-25T09:00:00+00:00"


def test_explain_help_says_a_time_without_zone_is_utc(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["explain", "--help"])
    assert exited.value.code == 0
    assert "is UTC" in " ".join(capsys.readouterr().out.split())


def test_explain_notes_that_an_active_forecast_is_not_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["explain", WEBMAIL, "--group", "webmail", "--current", "6", "--at", WEDNESDAY_0900_BERLIN]
    assert cli.main(argv) == 0
    assert "forecast" in capsys.readouterr().out.split("stages:")[1].split("result:")[0]
    assert cli.main([*argv, "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)["trail"]
    assert trail[-1]["name"] == "forecast"
    assert trail[-1]["reason"].startswith("not evaluated by explain")
    policy = tmp_path / "web.yaml"
    policy.write_text(SIMULATED_POLICY)
    assert cli.main(["explain", str(policy), "--group", "web", "--current", "2", "--json"]) == 0
    assert all(stage["name"] != "forecast" for stage in json.loads(capsys.readouterr().out)["trail"])
