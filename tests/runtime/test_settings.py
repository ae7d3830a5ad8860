"""Daemon settings: defaults, durations with units, and every problem located by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler import settings
from autoscaler.errors import PolicyError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "autoscaler.yaml"


def test_empty_file_gives_the_defaults() -> None:
    assert settings.parse("") == settings.Settings()


def test_sources_by_kind_and_durations() -> None:
    parsed = settings.parse(
        "sources:\n  prom: {kind: prometheus, url: 'http://127.0.0.1:9090', timeout: 3s}\n"
        "engine: {slot_timeout: 2m}\n"
    )
    prom = parsed.sources["prom"]
    assert isinstance(prom, settings.PrometheusSettings)
    assert prom.timeout == 3.0
    assert parsed.engine.slot_timeout == 120.0


def test_every_problem_is_reported_with_its_line() -> None:
    text = "sources:\n  prom: {kind: prometheus, timeout: 3q}\nengine:\n  bogus: 1\nhttp:\n  port: 99999\n"
    with pytest.raises(PolicyError) as caught:
        settings.parse(text, "a.yaml")
    problems = caught.value.problems
    assert any(p.startswith("a.yaml:2:") and "sources.prom.url" in p for p in problems)
    assert any(p.startswith("a.yaml:2:") and "timeout" in p for p in problems)
    assert any(p.startswith("a.yaml:4:") and "engine.bogus" in p for p in problems)
    assert any(p.startswith("a.yaml:6:") and "http.port" in p for p in problems)


def test_relative_paths_follow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "autoscaler.yaml"
    path.write_text("policies: [policies]\nstate_dir: state\n")
    loaded = settings.load(path)
    assert loaded.policies == (str(tmp_path / "policies"),)
    assert loaded.state_dir == str(tmp_path / "state")


def test_the_shipped_example_is_valid() -> None:
    loaded = settings.load(EXAMPLE)
    assert loaded.http.listen == "127.0.0.1"


def test_settings_problems_are_worded_like_policy_problems() -> None:
    text = (
        "http:\n  prot: 1\n"
        "engine:\n  shutdown_grace: 5\n"
        "sources:\n  prom:\n    kind: prometheus\n    ulr: x\n"
    )
    with pytest.raises(PolicyError) as caught:
        settings.parse(text, "a.yaml")
    assert caught.value.problems == [
        "a.yaml:2:3: http.prot: unknown key 'prot'; did you mean 'port'?",
        "a.yaml:4:19: engine.shutdown_grace: "
        "expected a duration with a unit such as '90s', '5m' or '1h', got 5",
        "a.yaml:7:5: sources.prom.url: required field is missing",
        "a.yaml:8:5: sources.prom.ulr: unknown key 'ulr'; did you mean 'url'?",
    ]


ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "fixtures" / "settings" / "invalid"
GOLDEN = sorted(INVALID.glob("*.yaml"))


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_invalid_settings_yield_their_messages(path: Path) -> None:
    relative = path.relative_to(ROOT)
    with pytest.raises(PolicyError) as caught:
        settings.parse(path.read_text(encoding="utf-8"), str(relative))
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    assert caught.value.problems == expected


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "::1", "localhost"])
def test_the_http_endpoint_binds_ip_addresses_or_localhost(address: str) -> None:
    assert settings.parse(f"http: {{listen: '{address}'}}\n").http.listen == address


@pytest.mark.parametrize("address", ["0.0.0.0.1", "example.org", "", "127.0.0.1:9464"])
def test_a_listen_address_that_is_no_ip_is_located(address: str) -> None:
    with pytest.raises(PolicyError) as caught:
        settings.parse(f"http:\n  listen: '{address}'\n", "a.yaml")
    (problem,) = caught.value.problems
    assert problem.startswith("a.yaml:2:11: http.listen: expected an IP address")
