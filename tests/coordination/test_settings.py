"""The `coordination:` settings section: optional, located errors, the shipped HA example."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler import settings
from autoscaler.errors import PolicyError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_without_the_section_the_daemon_acts_alone() -> None:
    assert settings.parse("policies: []\n").coordination is None
    assert settings.load(DEPLOY / "autoscaler.yaml").coordination is None


def test_the_ha_example_parses_with_tls_and_every_member() -> None:
    found = settings.load(DEPLOY / "autoscaler-ha.yaml").coordination
    assert found is not None
    assert len(found.endpoints) == 3
    assert found.lease_ttl == 5
    assert found.tls_cert is not None


def test_problems_are_located() -> None:
    text = "coordination:\n  endpoints: []\n  lease_ttl: 1\n  bogus: 2\n"
    with pytest.raises(PolicyError) as caught:
        settings.parse(text, "a.yaml")
    problems = caught.value.problems
    assert any(p.startswith("a.yaml:2:") and "coordination.endpoints" in p for p in problems)
    assert any(p.startswith("a.yaml:3:") and "coordination.lease_ttl" in p for p in problems)
    assert any(p.startswith("a.yaml:4:") and "coordination.bogus" in p for p in problems)


def test_a_margin_that_leaves_no_time_to_act_is_refused() -> None:
    with pytest.raises(PolicyError, match="margin"):
        settings.parse("coordination:\n  endpoints: [http://127.0.0.1:2379]\n  lease_ttl: 2\n  margin: 1s\n")
