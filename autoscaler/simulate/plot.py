"""Pictures of a replay (demand vs supply), so that a policy edit can be judged at a glance."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.simulate import engine, metrics, sweep
from autoscaler.simulate import trace as trace_mod


def _busiest_day(trace: trace_mod.Trace, demand: trace_mod.IntArray) -> tuple[int, int]:
    """Row range of the local day whose weekday morning demand is highest (the whole trace if none)."""
    mask = metrics.morning_mask(trace)
    if not mask.any():
        return 0, len(trace.times)
    day = trace.local_times() // 86400
    best = int(day[mask][int(np.argmax(np.where(mask, demand, -1)[mask]))])
    rows = np.flatnonzero(day == best)
    return int(rows[0]), int(rows[-1]) + 1


def available() -> bool:
    """Whether matplotlib can be imported here (the Debian package ships without it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    """pyplot on the file-only backend, imported late: the daemon never needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def frontier(path: Path | str, points: Sequence[sweep.Point], title: str) -> None:
    """Instance-hours against SLO-violation minutes, one line per controller, each point its target."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 6))
    for name in dict.fromkeys(p.name for p in points):
        line = sorted((p for p in points if p.name == name), key=lambda p: p.instance_hours)
        xs, ys = [p.instance_hours for p in line], [p.slo_minutes for p in line]
        axis.plot(xs, ys, marker="o", linewidth=2.0 if name == "policy" else 1.0, label=name)
        for point in line:
            axis.annotate(
                f"{point.target:.0%}", (point.instance_hours, point.slo_minutes), fontsize="x-small"
            )
    axis.set_yscale("symlog", linthresh=10.0)
    axis.set_xlabel("instance-hours")
    axis.set_ylabel("SLO-violation minutes (symlog)")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save(
    path: Path | str, trace: trace_mod.Trace, runs: list[engine.Run], capacity: float, target: float
) -> None:
    """Two panels, demand vs each run's supply: the whole trace, and the day with the busiest morning."""
    plt = _pyplot()
    demand = metrics.demand(trace.values, capacity, target)
    hours = (trace.times - trace.times[0]) / 3600.0
    first, last = _busiest_day(trace, demand)
    figure, (whole, zoom) = plt.subplots(2, 1, figsize=(12, 7))
    for axis, rows, title in (
        (whole, slice(None), "whole trace"),
        (zoom, slice(first, last), "busiest morning"),
    ):
        axis.step(hours[rows], demand[rows], where="post", color="black", linewidth=1.2, label="demand")
        for run in runs:
            axis.step(hours[rows], run.supply[rows], where="post", linewidth=0.8, label=run.name)
        axis.set_title(f"{trace.name}: {title}")
        axis.set_xlabel("hours since the first row")
        axis.set_ylabel("instances")
    whole.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
