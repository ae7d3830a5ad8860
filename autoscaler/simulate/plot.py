"""Pictures of a replay (demand vs supply), so that a policy edit can be judged at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoscaler.simulate import engine, metrics
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


def save(
    path: Path | str, trace: trace_mod.Trace, runs: list[engine.Run], capacity: float, target: float
) -> None:
    """Two panels, demand vs each run's supply: the whole trace, and the day with the busiest morning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
