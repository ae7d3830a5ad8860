"""Small traces and policies built in code, so the simulator tests never depend on shared files."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from autoscaler.policy import spec
from autoscaler.simulate import trace

CEST = timezone(timedelta(hours=2))
MONDAY = datetime(2024, 1, 1, 0, 0, tzinfo=CEST)
"""2024-01-01 was a Monday."""


def make_trace(values: Sequence[float | None], step: int = 60, start: datetime = MONDAY) -> trace.Trace:
    """A trace with one row per step; None leaves the row out (a gap)."""
    rows = [(start + timedelta(seconds=i * step), v) for i, v in enumerate(values) if v is not None]
    return trace.from_rows("test", rows)


def policy(**changes: object) -> spec.GroupPolicy:
    """A one-check utilisation policy at 70 %, reacting at once in both directions unless changed."""
    check = spec.Check(
        name="cpu", source="prometheus", strategy=spec.TargetTracking(kind="target_tracking", target=0.7)
    )
    base = spec.GroupPolicy(
        group="web",
        golden="golden.qcow2",
        template="web-template",
        min=1,
        max=100,
        evaluation_interval=60.0,
        warmup=60.0,
        checks=(check,),
        scale_down=spec.Direction(stabilization=0.0, cooldown=0.0),
    )
    return base.model_copy(update=changes)
