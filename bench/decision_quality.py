"""Decision quality on real traces: our reactive and predictive policies against HPA, AWS, static and oracle.

Every run is a replay through the same simulated fleet (boot time 60 s, capacity per instance from
each trace's sidecar, a row known only when its step is over); the figures are the SPEC elasticity
metrics for the whole trace and weekday mornings (06:00-10:00 local), and the same for the second
half of each trace alone: the forecast's knobs were tuned on the first halves, so "held-out" rows
are figures the tuning never saw.  Rows: `predictive` is the near-term forecast at the policy
defaults (quantile 0.9), `predictive-q0.5` the same model tuned for cost, `predictive-profile` the
previous seasonal-profile forecast with its longer scale-in hold, `predictive+pool` the default
plus two paused warm-pool members billed at full price (they hold their memory).
Plots go to bench/out/.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rich.table import Table

from autoscaler import simulate
from autoscaler.forecast import seasonal
from autoscaler.forecast.seasonal import Params as ProfileParams
from autoscaler.policy import spec
from autoscaler.simulate import engine, metrics, plot
from autoscaler.simulate import trace as trace_mod
from autoscaler.simulate.cli import report_console

TRACES = Path("/work/shared/traces")
OUT = Path(__file__).parent / "out"
BOOT_TIME = 60.0
TARGET = 0.7
COLUMNS = ("theta_u", "theta_o", "tau_u", "tau_o", "instability", "instance_hours", "slo_violation_minutes")
HEADERS = ("θu %", "θo %", "τu %", "τo %", "instab %", "inst-h", "SLO min")


def reactive_policy() -> spec.GroupPolicy:
    """Our reactive policy: HPA-like utilisation tracking with asymmetric, stabilized scale-in."""
    check = spec.Check(
        name="cpu",
        source="prometheus",
        query="avg(cpu_utilisation)",
        strategy=spec.TargetTracking(kind="target_tracking", target=TARGET, tolerance=0.05),
        max_staleness=600.0,
    )
    return spec.GroupPolicy(
        group="bench",
        golden="golden.qcow2",
        template="bench-template",
        min=1,
        max=500,
        evaluation_interval=30.0,
        warmup=60.0,
        checks=(check,),
        scale_up=spec.Direction(),
        scale_down=spec.Direction(stabilization=180.0, cooldown=0.0),
    )


def predictive_policy(quantile: float = 0.9, stabilization: float = 0.0) -> spec.GroupPolicy:
    """The reactive policy plus the near-term forecast as a scale-out floor one lead time ahead.

    The forecast spans one interval only and already holds the newest 3 minutes' peak, so scale-in
    needs no stabilization of its own: capacity goes as soon as the forecast lets it.
    """
    predictive = spec.Predictive(mode="active", quantile=quantile)
    down = spec.Direction(stabilization=stabilization, cooldown=0.0)
    return reactive_policy().model_copy(update={"predictive": predictive, "scale_down": down})


def _policy_run(name: str, trace: trace_mod.Trace, setup: simulate.Setup) -> engine.Run:
    params: ProfileParams | None = None
    if name == "reactive":
        policy = reactive_policy()
    elif name == "predictive-profile":
        policy, params = predictive_policy(stabilization=180.0), seasonal.PROFILE
    elif name == "predictive-q0.5":
        policy = predictive_policy(quantile=0.5)
    elif name == "predictive+pool":
        pool = spec.WarmPool(size=2, state="paused")
        policy = predictive_policy().model_copy(update={"warm_pool": pool})
    else:
        policy = predictive_policy()
    return simulate.run_policy(trace, policy, setup, params=params, name=name)


def _one(name: str, path: Path) -> tuple[str, engine.Run, float]:
    started = time.perf_counter()
    trace = trace_mod.load_csv(path)
    setup = simulate.Setup(capacity=_capacity(path), boot_time=BOOT_TIME)
    if name in simulate.BASELINES:
        run = simulate.run_baseline(name, trace, setup, target=TARGET)
    else:
        run = _policy_run(name, trace, setup)
    return name, run, time.perf_counter() - started


RUNS = (
    "oracle",
    "static",
    "hpa",
    "aws",
    "reactive",
    "predictive",
    "predictive-q0.5",
    "predictive-profile",
    "predictive+pool",
)
WINDOWS = ("whole", "morning", "held-out", "held-out morning")


def _capacity(path: Path) -> float:
    capacity = trace_mod.suggested_capacity(path)
    if capacity is None:
        raise SystemExit(f"{path}: the sidecar gives no suggested_capacity_per_instance")
    return capacity


def _windows(trace: trace_mod.Trace, run: engine.Run, capacity: float) -> dict[str, metrics.Figures]:
    """The figures of `run` over each window: whole, mornings, and both again on the second half."""
    mornings = metrics.morning_mask(trace)
    second = trace.times >= trace.times[0] + (trace.times[-1] - trace.times[0]) // 2
    masks = {"whole": None, "morning": mornings, "held-out": second, "held-out morning": second & mornings}
    return {
        window: metrics.figures(trace, run.supply, run.alive, capacity, TARGET, mask=mask)
        for window, mask in masks.items()
    }


def _table(trace_name: str, runs: dict[str, engine.Run], trace: trace_mod.Trace, capacity: float) -> Table:
    table = Table(title=f"{trace_name} (C = {capacity:g}, boot {BOOT_TIME:g} s, target {TARGET:.0%})")
    for header in ("run", "window", *HEADERS, "inst-h / oracle", "forecast WAPE %"):
        table.add_column(header, justify="left" if header in {"run", "window"} else "right")
    oracle = _windows(trace, runs["oracle"], capacity)
    for name, run in runs.items():
        figures = _windows(trace, run, capacity)
        forecast = run.extra.get("forecast")
        wape = _num(forecast["wape"]) if isinstance(forecast, dict) and forecast["wape"] is not None else "-"
        for window in WINDOWS:
            values, base = figures[window].as_dict(), oracle[window].as_dict()
            cells = [_num(values[c]) for c in COLUMNS]
            ratio = _num(values["instance_hours"], base["instance_hours"])
            first = window == "whole"
            table.add_row(
                name if first else "",
                window,
                *cells,
                ratio,
                wape if first else "",
                end_section=window == WINDOWS[-1],
            )
    return table


def _num(value: object, over: object = None) -> str:
    assert isinstance(value, float | int)
    if over is None:
        return f"{value:.1f}"
    assert isinstance(over, float | int)
    return f"{value / over:.2f}" if over else "-"


def main() -> int:
    """Run every trace found; say so and succeed when there is none."""
    console = report_console()
    paths = sorted(TRACES.glob("*.csv")) if TRACES.is_dir() else []
    if not paths:
        console.print(f"no traces in {TRACES}: nothing to benchmark")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {(p, n): pool.submit(_one, n, p) for p in paths for n in RUNS}
        for path in paths:
            trace = trace_mod.load_csv(path)
            capacity = _capacity(path)
            runs = {n: futures[(path, n)].result()[1] for n in RUNS}
            seconds = sum(futures[(path, n)].result()[2] for n in RUNS)
            console.print(_table(path.name, runs, trace, capacity))
            console.print(f"{len(trace.times)} rows, {seconds:.0f} s of replay (CPU, all runs)")
            picked = [runs[n] for n in ("oracle", "hpa", "aws", "predictive")]
            plot.save(OUT / f"{path.stem}.png", trace, picked, capacity, TARGET)
    console.print(f"plots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
