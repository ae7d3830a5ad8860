"""`autoscaler simulate`: replay a recorded trace through a policy (and peer baselines) before applying it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from autoscaler import errors, simulate
from autoscaler.forecast import seasonal
from autoscaler.policy import durations, files, spec
from autoscaler.simulate import engine, metrics, plot, policy_run
from autoscaler.simulate import trace as trace_mod

MODELS: dict[str, seasonal.Params | None] = {"nearterm": None} | {
    p.name: p for p in (seasonal.PROFILE, seasonal.NAIVE_WEEK)
}
"""None: the policy's own near-term model."""
LONG_TRACE = 20_000
"""Rows from which a progress bar is shown."""
HEADERS = {"instability": "instab.", "instance_hours": "inst-hours", "slo_violation_minutes": "SLO-viol min"}
DEMAND = (
    "ceil(value / (capacity_per_instance x target_utilisation)) per row, for the policy and every"
    " baseline alike; target_utilisation is the policy's own, and the baselines hold it too"
)
"""The demand every row of the table is judged against, as written into the JSON report."""
COLUMNS = ("theta_u", "theta_o", "tau_u", "tau_o", "instability", "instance_hours", "slo_violation_minutes")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register `simulate` with its options; the command runs `run(args)`."""
    parser = subparsers.add_parser("simulate", help="replay a trace through a policy", description=__doc__)
    parser.add_argument("--policy", required=True, type=Path, help="policy file (YAML)")
    parser.add_argument("--group", help="group in the policy file (required when it has several)")
    parser.add_argument(
        "--trace", required=True, type=Path, help="CSV 'timestamp,value'; gaps are absent rows"
    )
    parser.add_argument("--capacity-per-instance", type=float, help="load one instance serves at 100 %%")
    parser.add_argument("--boot-time", default="60s", help="clone request to booted guest, e.g. 60s")
    parser.add_argument("--baseline", action="append", choices=simulate.BASELINES, help="peer to compare")
    parser.add_argument("--forecast-model", choices=sorted(MODELS), default="nearterm")
    parser.add_argument("--pool-activation", help="seconds to activate a warm-pool member, e.g. 2s")
    parser.add_argument("--pool-cost", type=float, help="instance-hour fraction of a waiting pool member")
    parser.add_argument("--plot", type=Path, help="write a PNG of demand vs supply")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    parser.set_defaults(func=run)
    return parser


def _pick_group(policies: list[spec.GroupPolicy], group: str | None) -> spec.GroupPolicy:
    if group is None and len(policies) == 1:
        return policies[0]
    for policy in policies:
        if policy.group == group:
            return policy
    names = ", ".join(p.group for p in policies)
    raise ValueError(f"group {group!r} not in the policy file (it has: {names})")


def _setup(args: argparse.Namespace) -> simulate.Setup:
    capacity = args.capacity_per_instance or trace_mod.suggested_capacity(args.trace)
    if capacity is None or capacity <= 0:
        raise ValueError("--capacity-per-instance is required (the trace has no sidecar suggesting one)")
    activation = None if args.pool_activation is None else durations.parse(args.pool_activation)
    return simulate.Setup(capacity, durations.parse(args.boot_time), activation, args.pool_cost)


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[engine.Progress | None]:
    if not enabled:
        yield None
        return
    columns = (TextColumn(label), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=1)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _figures(trace: trace_mod.Trace, run: engine.Run, capacity: float, target: float) -> dict[str, object]:
    figures = metrics.whole_and_morning(trace, run.supply, run.alive, capacity, target)
    return {**figures, "changes": run.changes, **run.extra}


def table(rows: dict[str, dict[str, object]], title: str) -> Table:
    """One line per run for the whole trace and one for the weekday mornings."""
    out = Table(title=title)
    out.add_column("run")
    out.add_column("window")
    for column in COLUMNS:
        out.add_column(HEADERS.get(column, column), justify="right")
    for name, figures in rows.items():
        morning = figures["morning"]
        assert isinstance(morning, dict)
        for window, values in (("whole", figures), ("morning", morning)):
            out.add_row(name if window == "whole" else "", window, *(_cell(values[c]) for c in COLUMNS))
    return out


def _cell(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float | int) else str(value)


def simulate_all(
    args: argparse.Namespace, policy: spec.GroupPolicy, trace: trace_mod.Trace, setup: simulate.Setup
) -> tuple[dict[str, dict[str, object]], list[engine.Run]]:
    """Our policy and each requested baseline replayed, with their figures.

    Every row of the table is judged against one demand curve, at the policy's target utilisation
    (`DEMAND`), and the baselines hold that same target, so the rows differ only by their decisions.
    """
    show = not args.no_progress and len(trace.times) >= LONG_TRACE and sys.stderr.isatty()
    target = policy_run.target_utilisation(policy, setup.capacity)
    with _progress(show, policy.group) as progress:
        ours = simulate.run_policy(
            trace, policy, setup, params=MODELS[args.forecast_model], progress=progress
        )
    rows = {policy.group: _figures(trace, ours, setup.capacity, target)}
    runs = [ours]
    for name in args.baseline or ():
        with _progress(show, name) as progress:
            run = simulate.run_baseline(
                name, trace, setup, low=policy.min, high=policy.max, progress=progress, target=target
            )
        rows[name] = _figures(trace, run, setup.capacity, target)
        runs.append(run)
    return rows, runs


def run(args: argparse.Namespace) -> int:
    """Run `autoscaler simulate`; 0 on success, 2 when the policy, trace or options are unusable."""
    console = Console()
    try:
        policy = _pick_group(files.load_file(args.policy), args.group)
        trace = trace_mod.load_csv(args.trace)
        setup = _setup(args)
    except (errors.PolicyError, ValueError, OSError) as exc:
        Console(stderr=True).print(f"simulate: {exc}", markup=False)
        return 2
    rows, runs = simulate_all(args, policy, trace, setup)
    target = policy_run.target_utilisation(policy, setup.capacity)
    console.print(table(rows, f"{trace.name}: decision quality at {target:.0%} target utilisation"))
    if args.json is not None:
        head = {"trace": trace.name, "group": policy.group, "capacity_per_instance": setup.capacity}
        head |= {"boot_time": setup.boot_time, "target_utilisation": target, "demand": DEMAND}
        ours = rows.pop(policy.group)
        args.json.write_text(json.dumps({**head, **ours, "baselines": rows}, indent=2) + "\n")
    if args.plot is not None:
        plot.save(args.plot, trace, runs, setup.capacity, target)
    return 0
