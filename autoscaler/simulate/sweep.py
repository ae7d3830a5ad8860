"""The cost/service frontier: our policy and the peers at several target utilisations, side by side.

One target utilisation is one point (instance-hours, SLO-violation minutes) per controller; the
points of one controller over the targets are its frontier.  Comparing at one target compares
what each spends for the same nominal headroom; comparing along the frontier asks what a peer
would miss if it spent what we spend (its SLO minutes interpolated at our instance-hours).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from autoscaler import forecast, simulate
from autoscaler.policy import spec
from autoscaler.simulate import attribution, engine, metrics, policy_run
from autoscaler.simulate import trace as trace_mod

DEFAULT_PEERS = ("hpa", "aws")


def parse_targets(text: str) -> tuple[float, ...]:
    """'0.5,0.6,70' -> (0.5, 0.6, 0.7): fractions, or percents above 1.5; each in (0, 1]."""
    targets: list[float] = []
    for part in text.split(","):
        try:
            value = float(part.strip())
        except ValueError:
            raise ValueError(f"target utilisation {part.strip()!r} is not a number") from None
        value = value / 100.0 if value > 1.5 else value
        if not 0 < value <= 1:
            raise ValueError(f"target utilisation {part.strip()!r} is not in (0, 1] (or (0, 100] %)")
        targets.append(value)
    if not targets:
        raise ValueError("give at least one target utilisation")
    return tuple(sorted(set(targets)))


def retarget(policy: spec.GroupPolicy, target: float, capacity: float) -> spec.GroupPolicy:
    """`policy` aiming at `target` utilisation: its utilisation targets, per-instance and forecast shares."""
    old = policy_run.target_utilisation(policy, capacity)
    checks = tuple(_check_at(check, target, capacity) for check in policy.checks)
    predictive = policy.predictive.model_copy(
        update={"per_instance": policy.predictive.per_instance * target / old}
    )
    return policy.model_copy(update={"checks": checks, "predictive": predictive})


def _check_at(check: spec.Check, target: float, capacity: float) -> spec.Check:
    strategy = check.strategy
    if isinstance(strategy, spec.TargetTracking):
        value = target * 100.0 if strategy.target > 1.5 else target
        return check.model_copy(update={"strategy": strategy.model_copy(update={"target": value})})
    if isinstance(strategy, spec.PerInstance):
        share = target * capacity
        return check.model_copy(update={"strategy": strategy.model_copy(update={"per_instance": share})})
    return check


@dataclass(frozen=True)
class Point:
    """One controller at one target utilisation, judged over the chosen rows."""

    name: str
    target: float
    figures: dict[str, object]
    """The window's figures (as the simulate report), with "morning" inside."""
    over_provisioned: dict[str, float] | None = None
    """Over-provisioned instance-hours by the stage that held them (our policy only)."""

    @property
    def instance_hours(self) -> float:
        """What the point costs."""
        return float(self.figures["instance_hours"])  # type: ignore[arg-type]

    @property
    def slo_minutes(self) -> float:
        """What the point misses."""
        return float(self.figures["slo_violation_minutes"])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Job:
    """One replay of a sweep: picklable, so a process pool can run it."""

    name: str
    target: float
    policy: spec.GroupPolicy
    setup: simulate.Setup
    window: str
    params: forecast.Params | None = None


def run_job(trace: trace_mod.Trace, job: Job) -> Point:
    """Replay one controller at one target and judge it over the job's window."""
    policy = retarget(job.policy, job.target, job.setup.capacity)
    run: engine.Run
    if job.name == "policy":
        run = simulate.run_policy(trace, policy, job.setup, params=job.params, name=policy.group)
    else:
        run = simulate.run_baseline(
            job.name, trace, job.setup, low=policy.min, high=policy.max, target=job.target
        )
    rows = metrics.window_mask(trace, job.window)
    figures = metrics.whole_and_morning(trace, run.supply, run.alive, job.setup.capacity, job.target, rows)
    held = None
    if run.ledger is not None:
        held = attribution.over_provisioned(
            trace, run.alive, run.ledger, job.setup.capacity, job.target, rows
        )
    name = "policy" if job.name == "policy" else job.name
    return Point(name, job.target, figures, held)


def run_path(path: str, job: Job) -> Point:
    """`run_job` on the trace at `path` (what a worker process runs)."""
    return run_job(trace_mod.load_csv(path), job)


def run(
    trace: trace_mod.Trace | str,
    policy: spec.GroupPolicy,
    setup: simulate.Setup,
    targets: Sequence[float],
    peers: Sequence[str] = DEFAULT_PEERS,
    *,
    window: str = "whole",
    params: forecast.Params | None = None,
    executor: Executor | None = None,
    peer_targets: Sequence[float] = (),
) -> list[Point]:
    """Every controller at every target (the peers also at `peer_targets`, which are cheap to replay
    and widen the range their SLO minutes are interpolated over); with an executor the replays
    run in parallel.  A process pool needs `trace` as a path (each worker reads it).
    """
    jobs = jobs_for(policy, setup, targets, peers, window, params, peer_targets)
    if executor is None:
        loaded = trace_mod.load_csv(trace) if isinstance(trace, str) else trace
        return [run_job(loaded, job) for job in jobs]
    if not isinstance(trace, str):
        raise TypeError("a parallel sweep reads the trace from its path")
    return list(executor.map(run_path, [trace] * len(jobs), jobs))


def jobs_for(
    policy: spec.GroupPolicy,
    setup: simulate.Setup,
    targets: Sequence[float],
    peers: Sequence[str] = DEFAULT_PEERS,
    window: str = "whole",
    params: forecast.Params | None = None,
    peer_targets: Sequence[float] = (),
) -> list[Job]:
    """The replays of a sweep, target by target: the policy's, then each peer's."""
    jobs: list[Job] = []
    for target in sorted({*targets, *peer_targets}):
        names = (("policy",) if target in targets else ()) + tuple(peers)
        jobs += [Job(name, target, policy, setup, window, params) for name in names]
    return jobs


def interpolate(points: Sequence[Point], instance_hours: float) -> float | None:
    """A controller's SLO minutes at `instance_hours` along its frontier (None outside its range)."""
    ordered = sorted(points, key=lambda p: p.instance_hours)
    xs = [p.instance_hours for p in ordered]
    if not xs or instance_hours < xs[0] or instance_hours > xs[-1]:
        return None
    return float(np.interp(instance_hours, xs, [p.slo_minutes for p in ordered]))


def compare(points: Sequence[Point]) -> list[dict[str, object]]:
    """Per target: our figures, each peer's at that target, the ratios, and the peers along their frontier."""
    peers = sorted({p.name for p in points if p.name != "policy"})
    rows: list[dict[str, object]] = []
    for ours in (p for p in points if p.name == "policy"):
        row: dict[str, object] = {
            "target": ours.target,
            "instance_hours": ours.instance_hours,
            "slo_violation_minutes": ours.slo_minutes,
            "morning_theta_u": _morning(ours, "theta_u"),
            "morning_tau_u": _morning(ours, "tau_u"),
        }
        for peer in peers:
            line = [p for p in points if p.name == peer]
            same = next(p for p in line if p.target == ours.target)
            row[peer] = {
                "instance_hours": same.instance_hours,
                "slo_violation_minutes": same.slo_minutes,
                "instance_hours_ratio": _ratio(ours.instance_hours, same.instance_hours),
                "slo_minutes_ratio": _ratio(ours.slo_minutes, same.slo_minutes),
                "slo_minutes_at_our_instance_hours": interpolate(line, ours.instance_hours),
                "instance_hours_at_our_slo_minutes": _cost_at(line, ours.slo_minutes),
            }
        rows.append(row)
    return rows


def _cost_at(points: Sequence[Point], slo_minutes: float) -> float | None:
    """A controller's instance-hours at `slo_minutes` along its frontier (None outside its range)."""
    ordered = sorted(points, key=lambda p: p.slo_minutes)
    ys = [p.slo_minutes for p in ordered]
    if not ys or slo_minutes < ys[0] or slo_minutes > ys[-1]:
        return None
    return float(np.interp(slo_minutes, ys, [p.instance_hours for p in ordered]))


def _morning(point: Point, key: str) -> float | None:
    morning = point.figures["morning"]
    assert isinstance(morning, dict)
    value = morning.get(key)
    return None if value is None or not morning.get("steps") else float(value)


def _ratio(ours: float, theirs: float) -> float | None:
    return ours / theirs if theirs > 0 else None


def as_json(points: Sequence[Point]) -> dict[str, object]:
    """The sweep for the JSON report: every point, and the comparison per target."""
    return {
        "points": [
            {"run": p.name, "target": p.target, **p.figures, "over_provisioned_by_stage": p.over_provisioned}
            for p in points
        ],
        "comparison": compare(points),
    }
