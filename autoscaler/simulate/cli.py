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
from autoscaler.simulate import attribution, engine, metrics, plot, policy_run, sweep
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
UNLIMITED_WIDTH = 10_000
"""Columns of a report written to a file or a pipe: wide enough that rich never cuts a table."""


class UsageError(ValueError):
    """Options that cannot work together or with the policy file (exit 2, like argparse's own)."""


def report_console() -> Console:
    """Where tables go: the terminal at its width, or a file or pipe without any width limit.

    Rich assumes 80 columns when standard output is not a terminal and then cuts wide tables
    (headers like 'theta…'); a redirected report must hold every figure in full.
    """
    console = Console()
    return console if console.is_terminal else Console(width=UNLIMITED_WIDTH)


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
    parser.add_argument(
        "--window",
        choices=metrics.WINDOWS,
        default="whole",
        help="rows the figures judge: the whole trace, or its first or second half in time (tune on"
        " one, report on the other; the replay always runs from the first row)",
    )
    parser.add_argument(
        "--sweep",
        metavar="TARGETS",
        help="comma-separated target utilisations (0.5,0.6,0.7 or 50,60,70): the policy and the"
        " baselines (default hpa, aws) at each, as a cost/service frontier",
    )
    parser.add_argument("--frontier-plot", type=Path, help="with --sweep: write a PNG of the frontier")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    parser.set_defaults(func=run)
    return parser


def _pick_group(policies: list[spec.GroupPolicy], group: str | None) -> spec.GroupPolicy:
    names = ", ".join(p.group for p in policies)
    if group is None:
        if len(policies) == 1:
            return policies[0]
        raise UsageError(f"--group is required (groups in the file: {names})")
    for policy in policies:
        if policy.group == group:
            return policy
    raise UsageError(f"group {group!r} not in the policy file (it has: {names})")


def _capacity(args: argparse.Namespace) -> float:
    given: float | None = args.capacity_per_instance
    if given is not None:
        if given <= 0:
            raise UsageError(f"--capacity-per-instance must be > 0, got {given:g}")
        return given
    suggested = trace_mod.suggested_capacity(args.trace)
    if suggested is None:
        raise UsageError("--capacity-per-instance is required (the trace has no sidecar suggesting one)")
    if suggested <= 0:
        raise ValueError(f"{args.trace}: the sidecar's suggested capacity per instance must be > 0")
    return suggested


def _duration_option(option: str, text: str) -> float:
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _setup(args: argparse.Namespace) -> simulate.Setup:
    capacity = _capacity(args)
    boot_time = _duration_option("--boot-time", args.boot_time)
    activation = (
        None if args.pool_activation is None else _duration_option("--pool-activation", args.pool_activation)
    )
    return simulate.Setup(capacity, boot_time, activation, args.pool_cost)


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


def _figures(
    trace: trace_mod.Trace, run: engine.Run, capacity: float, target: float, window: str = "whole"
) -> dict[str, object]:
    rows = metrics.window_mask(trace, window)
    figures = metrics.whole_and_morning(trace, run.supply, run.alive, capacity, target, rows)
    out = {**figures, "morning": _judged(figures["morning"]), "changes": run.changes, **run.extra}
    if run.ledger is not None:
        held = attribution.over_provisioned(trace, run.alive, run.ledger, capacity, target, rows)
        out["over_provisioned_by_stage"] = held
    return out


def attribution_table(held: dict[str, float], title: str) -> Table:
    """Over-provisioned instance-hours by the stage that held them, largest first."""
    out = Table(title=title)
    out.add_column("stage")
    out.add_column("inst-hours", justify="right")
    out.add_column("share", justify="right")
    total = sum(held.values())
    for stage, hours in sorted(held.items(), key=lambda item: -item[1]):
        out.add_row(stage, f"{hours:.1f}", f"{100.0 * hours / total:.0f} %" if total else "-")
    out.add_row("total", f"{total:.1f}", "", end_section=True)
    return out


def _judged(window: object) -> object:
    """A window's figures, or None for each when the trace has no row in it (0.0 would read as perfect)."""
    assert isinstance(window, dict)
    if window.get("steps"):
        return window
    return {key: (0 if key == "steps" else None) for key in window}


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
    if value is None:
        return "n/a"
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
    rows = {policy.group: _figures(trace, ours, setup.capacity, target, args.window)}
    runs = [ours]
    for name in args.baseline or ():
        with _progress(show, name) as progress:
            run = simulate.run_baseline(
                name, trace, setup, low=policy.min, high=policy.max, progress=progress, target=target
            )
        rows[name] = _figures(trace, run, setup.capacity, target, args.window)
        runs.append(run)
    return rows, runs


def _inputs(args: argparse.Namespace) -> tuple[spec.GroupPolicy, trace_mod.Trace, simulate.Setup]:
    """The group, the trace and the simulated world; UsageError for options, others for the files."""
    policy = _pick_group(files.load_file(args.policy), args.group)
    return policy, trace_mod.load_csv(args.trace), _setup(args)


def _plots_possible(args: argparse.Namespace) -> None:
    """A plot asked for needs matplotlib: say so before a long replay, not in a traceback after it."""
    wanted = [
        flag for flag, value in (("--plot", args.plot), ("--frontier-plot", args.frontier_plot)) if value
    ]
    if wanted and not plot.available():
        raise UsageError(
            f"{' and '.join(wanted)} need matplotlib, which this installation lacks "
            "(pip install matplotlib into its environment, or run from a source checkout)"
        )


def _targets(args: argparse.Namespace) -> tuple[float, ...] | None:
    _plots_possible(args)
    if args.sweep is None:
        if args.frontier_plot is not None:
            raise UsageError("--frontier-plot needs --sweep")
        return None
    try:
        return sweep.parse_targets(args.sweep)
    except ValueError as exc:
        raise UsageError(f"--sweep: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run `autoscaler simulate`; 0 on success, 1 when the policy or trace is unusable (as check and
    explain), 2 when the options are (as any usage error)."""
    try:
        targets = _targets(args)
        policy, trace, setup = _inputs(args)
    except (errors.PolicyError, ValueError, OSError) as exc:
        # plain lines: a rich console would wrap a long located problem at 80 columns when redirected
        print(exc if isinstance(exc, errors.PolicyError) else f"simulate: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    if targets is not None:
        return _run_sweep(args, policy, trace, setup, targets)
    rows, runs = simulate_all(args, policy, trace, setup)
    target = policy_run.target_utilisation(policy, setup.capacity)
    window = "" if args.window == "whole" else f", {args.window}"
    title = f"{trace.name}{window}: decision quality at {target:.0%} target utilisation"
    console = report_console()
    console.print(table(rows, title))
    held = rows[policy.group].get("over_provisioned_by_stage")
    if isinstance(held, dict):
        console.print(attribution_table(held, f"{policy.group}: over-provisioned instance-hours by stage"))
    if args.json is not None:
        head = {"trace": trace.name, "group": policy.group, "capacity_per_instance": setup.capacity}
        head |= {"boot_time": setup.boot_time, "target_utilisation": target, "demand": DEMAND}
        head |= {"window": args.window}
        ours = rows.pop(policy.group)
        args.json.write_text(json.dumps({**head, **ours, "baselines": rows}, indent=2) + "\n")
    if args.plot is not None:
        plot.save(args.plot, trace, runs, setup.capacity, target)
    return 0


def _run_sweep(
    args: argparse.Namespace,
    policy: spec.GroupPolicy,
    trace: trace_mod.Trace,
    setup: simulate.Setup,
    targets: tuple[float, ...],
) -> int:
    peers = tuple(args.baseline or sweep.DEFAULT_PEERS)
    points = sweep.run(
        trace, policy, setup, targets, peers, window=args.window, params=MODELS[args.forecast_model]
    )
    window = "" if args.window == "whole" else f", {args.window}"
    console = report_console()
    console.print(frontier_table(points, f"{trace.name}{window}: cost/service frontier"))
    console.print(comparison_table(sweep.compare(points), f"{trace.name}{window}: {policy.group} vs peers"))
    for point in points:
        if point.over_provisioned is not None:
            title = f"{policy.group} at {point.target:.0%}: over-provisioned instance-hours by stage"
            console.print(attribution_table(point.over_provisioned, title))
    if args.json is not None:
        head = {"trace": trace.name, "group": policy.group, "capacity_per_instance": setup.capacity}
        head |= {"boot_time": setup.boot_time, "window": args.window, "demand": DEMAND}
        args.json.write_text(json.dumps({**head, **sweep.as_json(points)}, indent=2) + "\n")
    if args.frontier_plot is not None:
        plot.frontier(args.frontier_plot, points, f"{trace.name}{window}: instance-hours vs SLO minutes")
    return 0


def frontier_table(points: list[sweep.Point], title: str) -> Table:
    """One line per controller and target: what it cost, what it missed, its weekday mornings."""
    out = Table(title=title)
    for header in ("run", "target", "inst-hours", "SLO-viol min", "morning theta_u", "morning tau_u"):
        out.add_column(header, justify="left" if header == "run" else "right")
    for point in sorted(points, key=lambda p: (p.name != "policy", p.name, p.target)):
        morning = point.figures["morning"]
        assert isinstance(morning, dict)
        out.add_row(
            point.name,
            f"{point.target:.0%}",
            f"{point.instance_hours:.1f}",
            f"{point.slo_minutes:.1f}",
            _cell(morning.get("theta_u") if morning.get("steps") else None),
            _cell(morning.get("tau_u") if morning.get("steps") else None),
        )
    return out


def comparison_table(rows: list[dict[str, object]], title: str) -> Table:
    """Per target: our cost and misses over each peer's at the same target and along its frontier."""
    out = Table(title=title)
    peers = sorted(k for k in (rows[0] if rows else {}) if isinstance(rows[0][k], dict))
    out.add_column("target", justify="right")
    for peer in peers:
        out.add_column(f"inst-h / {peer}", justify="right")
        out.add_column(f"SLO min / {peer}", justify="right")
        out.add_column(f"{peer} SLO min at our inst-h", justify="right")
        out.add_column(f"{peer} inst-h at our SLO min", justify="right")
    for row in rows:
        cells = [f"{row['target']:.0%}"]
        for peer in peers:
            peer_row = row[peer]
            assert isinstance(peer_row, dict)
            cells += [
                _ratio_cell(peer_row["instance_hours_ratio"]),
                _ratio_cell(peer_row["slo_minutes_ratio"]),
                _cell(peer_row["slo_minutes_at_our_instance_hours"]),
                _cell(peer_row["instance_hours_at_our_slo_minutes"]),
            ]
        out.add_row(*cells)
    return out


def _ratio_cell(value: object) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
