"""Small builders for decision-core tests: policies from plain dicts, fleets from counts."""

from __future__ import annotations

from typing import Any

from autoscaler import model
from autoscaler.policy import spec

CPU_CHECK: dict[str, Any] = {
    "name": "cpu",
    "source": "prometheus",
    "query": "avg(cpu)",
    "strategy": {"kind": "target_tracking", "target": 0.5},
}


def policy(**overrides: Any) -> spec.GroupPolicy:
    """A valid group policy (min 1, max 20, one cpu check, no limits) with `overrides` applied."""
    data: dict[str, Any] = {
        "group": "web",
        "golden": "/golden/web.qcow2",
        "template": "web-template",
        "min": 1,
        "max": 20,
        "checks": [CPU_CHECK],
        "scale_up": {},
        "scale_down": {},
    }
    data.update(overrides)
    return spec.GroupPolicy.model_validate(data)


def fleet(
    ready: int, booting: int = 0, failed: int = 0, created_at: float = 0.0, headroom: int | None = None
) -> model.GroupInventory:
    """A group inventory with that many ready, booting and failed members, created at `created_at` + index."""
    states = (
        [model.InstanceState.READY] * ready
        + [model.InstanceState.BOOTING] * booting
        + [model.InstanceState.FAILED] * failed
    )
    members = tuple(
        model.Instance(f"web-{i}", f"uuid-{i}", state, created_at + i, load=0.1 * (i % 7))
        for i, state in enumerate(states)
    )
    return model.GroupInventory("web", members, headroom)


def fresh(value: float, at: float) -> model.Fresh:
    """One fresh sample."""
    return model.Fresh((model.Sample(value, at),))
