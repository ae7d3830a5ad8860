"""Decisions rendered for people (`autoscaler explain`, logs) and machines (JSON for /explain and --json)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from autoscaler import model
from autoscaler.policy import durations


def to_dict(decision: model.Decision) -> dict[str, Any]:
    """The decision as plain JSON-ready data."""
    data = dataclasses.asdict(decision)
    data["direction"] = decision.direction.value
    data["at_iso"] = datetime.fromtimestamp(decision.at, tz=UTC).isoformat()
    return data


def to_json(decision: model.Decision) -> str:
    """The decision as indented JSON."""
    return json.dumps(to_dict(decision), indent=2)


def to_text(decision: model.Decision) -> str:
    """The decision as a few readable lines: checks, every stage that shaped it, the result."""
    when = datetime.fromtimestamp(decision.at, tz=UTC).isoformat(timespec="seconds")
    lines = [f"group {decision.group} at {when}: {decision.current} instances"]
    lines += ["checks:"] + [
        f"  {c.name:<16} {c.kind:<8} value={_value(c.value):<10} -> {c.proposal:<4} {c.detail}"
        for c in decision.checks
    ]
    lines += ["stages:"] + (
        [f"  {s.name:<16} {s.before:>4} -> {s.after:<4} {s.reason}" for s in decision.trail]
        or ["  (none changed it)"]
    )
    action = "" if decision.act else " (not carried out)"
    lines.append(f"result: {decision.desired}{action}")
    if decision.victims:
        lines.append(f"remove: {', '.join(decision.victims)}")
    lines.append(f"reason: {decision.reason}")
    return "\n".join(lines)


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def inputs_from_values(values: Mapping[str, Any], now: float) -> dict[str, model.CheckInput]:
    """Check inputs from hand-given values: a number, null (missing), "failed", or {value, age}."""
    return {name: _input(name, raw, now) for name, raw in values.items()}


def _input(name: str, raw: Any, now: float) -> model.CheckInput:
    if raw is None:
        return model.Missing("empty")
    if raw == "failed":
        return model.Failed("unavailable")
    if isinstance(raw, bool):
        raise ValueError(f"{name}: expected a number, null, 'failed' or {{value, age}}")
    if isinstance(raw, int | float):
        return model.Fresh((model.Sample(float(raw), now),))
    if isinstance(raw, dict) and "value" in raw:
        age = durations.parse(raw.get("age", "0s"))
        value = raw["value"]
        samples = () if value is None else (model.Sample(float(value), now - age),)
        return model.Fresh(samples)
    if isinstance(raw, dict) and "failed" in raw:
        return model.Failed(str(raw["failed"]))
    raise ValueError(f"{name}: expected a number, null, 'failed' or {{value, age}}, got {raw!r}")
