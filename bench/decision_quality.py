"""Decision quality on real traces: our reactive and predictive policies against HPA, AWS, static and oracle.

Every run is a replay through the same simulated fleet (boot time 60 s, capacity per instance from
each trace's sidecar); the figures are the SPEC elasticity metrics for the whole trace and for
weekday mornings (06:00-10:00 local).  Two forecast models are compared: the seasonal profile (our
default) and the seasonal-naive one (same weekday last week).  Plots go to bench/out/.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autoscaler import simulate
from autoscaler.forecast import seasonal
from autoscaler.policy import spec
from autoscaler.simulate import engine, metrics, plot
from autoscaler.simulate import trace as trace_mod

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


def predictive_policy(headroom: float = 0.0) -> spec.GroupPolicy:
    """The reactive policy plus the seasonal forecast as a scale-out floor one lead time ahead."""
    predictive = spec.Predictive(mode="active", headroom=headroom)
    return reactive_policy().model_copy(update={"predictive": predictive})


def _one(name: str, path: Path) -> tuple[str, engine.Run, float]:
    started = time.perf_counter()
    trace = trace_mod.load_csv(path)
    setup = simulate.Setup(capacity=_capacity(path), boot_time=BOOT_TIME)
    if name in simulate.BASELINES:
        run = simulate.run_baseline(name, trace, setup)
    elif name == "reactive":
        run = simulate.run_policy(trace, reactive_policy(), setup, name=name)
    else:
        params = seasonal.NAIVE_WEEK if name == "predictive-naive" else seasonal.PROFILE
        run = simulate.run_policy(trace, predictive_policy(), setup, params=params, name=name)
    return name, run, time.perf_counter() - started


RUNS = ("oracle", "static", "hpa", "aws", "reactive", "predictive", "predictive-naive")


def _capacity(path: Path) -> float:
    capacity = trace_mod.suggested_capacity(path)
    if capacity is None:
        raise SystemExit(f"{path}: the sidecar gives no suggested_capacity_per_instance")
    return capacity


def _table(trace_name: str, runs: dict[str, engine.Run], trace: trace_mod.Trace, capacity: float) -> Table:
    table = Table(title=f"{trace_name} (C = {capacity:g}, boot {BOOT_TIME:g} s, target {TARGET:.0%})")
    for header in ("run", "window", *HEADERS, "inst-h / oracle", "forecast WAPE %"):
        table.add_column(header, justify="left" if header in {"run", "window"} else "right")
    oracle = metrics.whole_and_morning(trace, runs["oracle"].supply, runs["oracle"].alive, capacity, TARGET)
    for name, run in runs.items():
        figures = metrics.whole_and_morning(trace, run.supply, run.alive, capacity, TARGET)
        forecast = run.extra.get("forecast")
        wape = _num(forecast["wape"]) if isinstance(forecast, dict) and forecast["wape"] is not None else "-"
        for window in ("whole", "morning"):
            values, base = _window(figures, window), _window(oracle, window)
            cells = [_num(values[c]) for c in COLUMNS]
            ratio = _num(values["instance_hours"], base["instance_hours"])
            table.add_row(
                name if window == "whole" else "", window, *cells, ratio, wape if window == "whole" else ""
            )
    return table


def _window(figures: dict[str, object], window: str) -> dict[str, object]:
    if window == "whole":
        return figures
    morning = figures["morning"]
    assert isinstance(morning, dict)
    return morning


def _num(value: object, over: object = None) -> str:
    assert isinstance(value, float | int)
    if over is None:
        return f"{value:.1f}"
    assert isinstance(over, float | int)
    return f"{value / over:.2f}" if over else "-"


def main() -> int:
    """Run every trace found; say so and succeed when there is none."""
    console = Console(width=150)
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
