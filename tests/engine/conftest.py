"""A small world for engine tests: the real handler, limiter, journal and store over fakes at the seams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from autoscaler.engine import handler, journal, limiter, manager, memory
from autoscaler.policy import files, spec
from autoscaler.telemetry import metrics
from tests import fakes


def make_policy(**changes: Any) -> spec.GroupPolicy:
    """A 'web' group sized by load per instance (10 each); fast cooldowns unless told otherwise."""
    fields: dict[str, Any] = {
        "group": "web",
        "golden": "golden-web.qcow2",
        "template": "web-template",
        "min": 1,
        "max": 20,
        "evaluation_interval": "15s",
        "warmup": "0s",
        "checks": [
            {
                "name": "load",
                "source": "fake",
                "query": "load",
                "strategy": {"kind": "per_instance", "per_instance": 10, "tolerance": 0.0},
            }
        ],
        "scale_up": {"cooldown": "60s", "rate": {"instances": 10, "period": "1m"}},
        "scale_down": {"stabilization": "0s", "cooldown": "0s", "rate": {"instances": 10, "period": "1m"}},
    }
    fields.update(changes)
    return spec.GroupPolicy.model_validate(fields)


def loaded(policy: spec.GroupPolicy) -> files.LoadedGroup:
    """The policy as the loader would hand it over."""
    return files.LoadedGroup(policy, "web.yaml", 1, files.revision(policy))


@dataclass
class World:
    """Everything a handler needs, reachable by the test."""

    clock: fakes.FakeClock
    target: fakes.FakeTarget
    source: fakes.FakeMetricSource
    registry: CollectorRegistry
    deps: handler.Deps

    def handler(self, policy: spec.GroupPolicy | None = None) -> handler.GroupHandler:
        """A fresh handler for `policy` (default: make_policy())."""
        return handler.GroupHandler(loaded(policy or make_policy()), self.deps)

    def load(self, value: float | None) -> None:
        """Script the 'load' query."""
        self.source.values["load"] = value

    def sample(self, name: str, labels: dict[str, str]) -> float | None:
        """A sample from the registry."""
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A fresh world per test."""
    clock = fakes.FakeClock()
    target = fakes.FakeTarget(clock)
    source = fakes.FakeMetricSource()
    registry = CollectorRegistry()
    deps = handler.Deps(
        target=target,
        sources={"fake": source},
        clock=clock,
        limiter=limiter.Limiter(slots=2, timeout=1.0),
        store=memory.MemoryStore(tmp_path / "state"),
        journal=journal.Journal(50),
        metrics=metrics.Metrics(registry),
    )
    return World(clock, target, source, registry, deps)


@contextlib.asynccontextmanager
async def managing(deps: handler.Deps, **options: float) -> AsyncIterator[manager.GroupManager]:
    """A GroupManager governing the 'web' group, running in the background until the block ends."""
    groups = manager.GroupManager(deps, **options)
    groups.apply({"web": loaded(make_policy())})
    runner = asyncio.create_task(groups.run())
    try:
        yield groups
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
