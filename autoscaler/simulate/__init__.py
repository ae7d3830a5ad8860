"""Replays of demand traces through the decision core and through peer baselines, to judge decision quality.

`run_policy` and `run_baseline` return an `engine.Run` (ready instances and cost per trace row);
`metrics.whole_and_morning` turns a run into the SPEC elasticity figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler import forecast
from autoscaler.policy import spec
from autoscaler.simulate import baselines, engine, fleet, metrics, policy_run
from autoscaler.simulate import trace as trace_mod

BASELINES = ("hpa", "aws", "static", "oracle")


@dataclass(frozen=True)
class Setup:
    """The simulated world: what one instance serves and how long a clone takes to serve."""

    capacity: float
    """Load one instance serves at 100 % utilisation, in the trace's unit."""
    boot_time: float = 60.0
    """Seconds from clone request to a booted guest."""
    pool_activation: float | None = None
    """Seconds to activate a warm-pool member; default by pool state (paused 2 s, shutoff = boot)."""
    pool_cost: float | None = None
    """Instance-hour fraction of a waiting pool member; default paused 1.0, shutoff 0.0."""
    report_delay: float | None = None
    """Seconds after a row's timestamp until controllers see it; default one trace step (a row is
    the load over the step it starts, known when that step ends)."""

    def known_after(self, step: int) -> float:
        """Seconds from a row's timestamp until it is visible, for a trace of `step` seconds."""
        return float(step) if self.report_delay is None else self.report_delay


def _start_count(trace: trace_mod.Trace, capacity: float, target: float, low: int, high: int) -> int:
    first = int(metrics.demand(trace.values[:1], capacity, target)[0])
    return min(max(first, low), high)


def forecast_setup(
    policy: spec.GroupPolicy, setup: Setup, step: int, params: forecast.Params
) -> policy_run.ForecastSetup:
    """The forecast of `policy` in the simulated world; the load per instance comes from the trace's scale."""
    predictive = policy.predictive
    # The simulated target measures every clone at its ready delay, so that is its p90.
    measured = policy_run.ready_delay(policy, setup.boot_time)
    lead = forecast.lead(predictive.lead, measured, policy.warmup, policy.evaluation_interval)
    per_instance = setup.capacity * policy_run.target_utilisation(policy, setup.capacity)
    return policy_run.ForecastSetup(
        params,
        lead,
        float(policy_run.evaluation_seconds(policy)),
        per_instance,
        predictive.headroom,
        predictive.mode == "active",
        setup.known_after(step),
        forecast.calibration_for(predictive),
    )


def run_policy(
    trace: trace_mod.Trace,
    policy: spec.GroupPolicy,
    setup: Setup,
    *,
    params: forecast.Params | None = None,
    name: str = "policy",
    progress: engine.Progress | None = None,
) -> engine.Run:
    """Replay `trace` through the decision core under `policy` (forecasting if its predictive mode is on).

    The forecast model is the policy's near-term one unless `params` names another.
    """
    target = policy_run.target_utilisation(policy, setup.capacity)
    delay = policy_run.ready_delay(policy, setup.boot_time)
    pool = fleet.pool_model(policy.warm_pool, delay, setup.pool_activation, setup.pool_cost)
    start = _start_count(trace, setup.capacity, target, policy.min, policy.max)
    group = fleet.Fleet(policy.group, delay, pool, start, float(trace.times[0]))
    forecaster = None
    model = forecast.params_for(policy.predictive) if params is None else params
    if policy.predictive.mode != "off":
        forecaster = policy_run.Forecaster(trace, forecast_setup(policy, setup, trace.step, model))
    controller = policy_run.PolicyController(policy, setup.capacity, forecaster, name)
    run = engine.replay(trace, controller, group, progress, delay=setup.known_after(trace.step))
    run.extra["decisions"] = controller.decisions
    run.ledger = controller.ledger
    if forecaster is not None:
        run.extra["forecast"] = forecaster.summary()
    return run


def run_baseline(
    name: str,
    trace: trace_mod.Trace,
    setup: Setup,
    *,
    low: int = 1,
    high: int = 10_000,
    progress: engine.Progress | None = None,
    target: float = baselines.TARGET,
) -> engine.Run:
    """Replay `trace` through one peer baseline (hpa, aws, static or oracle) holding `target` utilisation."""
    if name == "static":
        return baselines.static(trace, setup.capacity, target)
    if name == "oracle":
        return baselines.oracle(trace, setup.capacity, setup.boot_time, target)
    controller: engine.Controller
    max_age = max(120.0, 2.0 * trace.step)
    if name == "hpa":
        controller = baselines.Hpa(setup.capacity, low, high, max_age, target)
    elif name == "aws":
        controller = baselines.AwsTargetTracking(setup.capacity, low, high, max_age, target)
    else:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    start = _start_count(trace, setup.capacity, target, low, high)
    group = fleet.Fleet(name, setup.boot_time, fleet.PoolModel(), start, float(trace.times[0]))
    return engine.replay(trace, controller, group, progress, delay=setup.known_after(trace.step))
