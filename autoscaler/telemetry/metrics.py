"""Every Prometheus metric the daemon exports, defined in one place so names and labels stay consistent.

The composition root creates one `Metrics(registry)`; tests create one per test with a fresh
`CollectorRegistry` and read it back with `registry.get_sample_value(name, labels)`. Other
modules report through plain methods that take seconds measured with their own clock, so nothing
outside `telemetry/` imports `prometheus_client`. Group state goes through `publish()` and the
scrape-time collector in `telemetry.groups`.

Labels are bounded: group names are validated by the policy schema; free-form values such as
reasons, error classes and operations pass through `bounded()` and collapse to "other" when they
do not look like a short snake_case token.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import platform
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, exposition

import autoscaler
from autoscaler import model
from autoscaler.telemetry import groups

if TYPE_CHECKING:
    from autoscaler import targets

GroupSnapshot = groups.GroupSnapshot
PREFIX = groups.PREFIX
CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST
"""The Content-Type of `Metrics.exposition()`, for the HTTP handler."""
NON_CLIPPING_STAGES = frozenset({"propose", "combine"})
"""Stages that form the proposal; a count change in any other stage counts as a clip."""
PROPOSAL_STAGES = NON_CLIPPING_STAGES | {"tolerance"}
"""Trail entries that explain the checks' proposal rather than a stage that shaped it."""

OPERATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
LIBVIRT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PROVISION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
QUERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

_BOUNDED = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def bounded(value: str) -> str:
    """`value` when it looks like a bounded token (lower-case snake_case, <= 40 chars), else "other"."""
    return value if _BOUNDED.fullmatch(value) else "other"


def decision_reason(decision: model.Decision) -> str:
    """The bounded `reason` label of a decision: the last stage that shaped the count, or `checks`.

    The decision's own reason is a sentence for people; this is the stage name behind it
    (`rate_limit`, `cooldown`, `schedule`, `capacity`, ...), so it can be a label.
    """
    shaping = [s.name for s in decision.trail if s.name not in PROPOSAL_STAGES]
    return bounded(shaping[-1]) if shaping else "checks"


def scale_outcome(result: model.ScaleResult | None, error_class: str | None) -> str:
    """The `result` label of one scale operation: success, partial, failure, noop or error."""
    if error_class is not None or result is None:
        return "error"
    if result.done and result.failed:
        return "partial"
    if result.failed:
        return "failure"
    return "success" if result.done else "noop"


class Metrics:
    """The daemon's metrics on one registry; also the `targets.TargetObserver` for hypervisor calls."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._snapshots: dict[str, groups.GroupSnapshot] = {}
        self._forgotten: set[str] = set()
        registry.register(_Sweeper(self))  # first: every collection sees forgotten groups gone
        registry.register(groups.GroupCollector(self._snapshots))
        self._define_engine(registry)
        self._define_sources(registry)
        self._define_policy(registry)
        self._define_target(registry)
        self._define_process(registry)
        self._per_group: list[Any] = [
            m for m in vars(self).values() if "group" in getattr(m, "_labelnames", ())
        ]

    # --- definitions ----------------------------------------------------------------------------

    def _define_engine(self, r: CollectorRegistry) -> None:
        p = PREFIX
        self.evaluations = Counter(
            f"{p}_evaluations_total", "Evaluations by result.", ["group", "result"], registry=r
        )
        self.evaluation_duration = Histogram(
            f"{p}_evaluation_duration_seconds",
            "Time of one evaluation.",
            ["group"],
            buckets=TICK_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            f"{p}_decisions_total",
            "Decisions by direction and reason.",
            ["group", "direction", "reason"],
            registry=r,
        )
        self.clipped = Counter(
            f"{p}_decision_clipped_total", "Decisions a stage changed.", ["group", "stage"], registry=r
        )
        self.scale_operations = Counter(
            f"{p}_scale_operations_total",
            "Scale operations by outcome.",
            ["group", "direction", "result"],
            registry=r,
        )
        self.scaled_instances = Counter(
            f"{p}_scale_instances_total",
            "Instances created or removed (ok) or not (failed).",
            ["group", "direction", "result"],
            registry=r,
        )
        self.replacements = Counter(
            f"{p}_replacements_total", "Members replaced by reason.", ["group", "reason"], registry=r
        )
        self.handler_restarts = Counter(
            f"{p}_handler_restarts_total", "Group handlers restarted after a bug.", ["group"], registry=r
        )
        self.forecast_predicted = Gauge(
            f"{p}_forecast_predicted",
            "Forecast of the group's load (predictive mode).",
            ["group"],
            registry=r,
        )
        self.forecast_error = Gauge(
            f"{p}_forecast_error_ratio", "Relative error of the forecast for now.", ["group"], registry=r
        )

    def _define_sources(self, r: CollectorRegistry) -> None:
        p = PREFIX
        self.query_duration = Histogram(
            f"{p}_source_query_duration_seconds",
            "Time of one metric query.",
            ["source"],
            buckets=QUERY_BUCKETS,
            registry=r,
        )
        self.source_errors = Counter(
            f"{p}_source_errors_total", "Failed metric queries.", ["source", "error_class"], registry=r
        )
        self.check_inputs = Counter(
            f"{p}_check_inputs_total",
            "Check inputs by kind: fresh, missing, stale, failed.",
            ["group", "check", "result"],
            registry=r,
        )
        self.check_errors = Counter(
            f"{p}_check_errors_total",
            "Failed queries per check.",
            ["group", "check", "error_class"],
            registry=r,
        )

    def _define_policy(self, r: CollectorRegistry) -> None:
        p = PREFIX
        self.policy_reloads = Counter(
            f"{p}_policy_reloads_total", "Policy reloads by result.", ["result"], registry=r
        )
        self.policy_errors = Gauge(
            f"{p}_policy_load_errors", "Problems in a policy file that was rejected.", ["file"], registry=r
        )
        self.policy_reload_success = Gauge(
            f"{p}_policy_last_reload_success_timestamp_seconds", "When a reload last succeeded.", registry=r
        )

    def _define_target(self, r: CollectorRegistry) -> None:
        p = PREFIX
        self.clone_duration = Histogram(
            f"{p}_clone_duration_seconds",
            "Time to clone one instance.",
            ["group"],
            buckets=OPERATION_BUCKETS,
            registry=r,
        )
        self.destroy_duration = Histogram(
            f"{p}_destroy_duration_seconds",
            "Time to destroy one instance.",
            ["group"],
            buckets=OPERATION_BUCKETS,
            registry=r,
        )
        self.provision_duration = Histogram(
            f"{p}_provision_phase_duration_seconds",
            "Time of one provisioning phase: overlay, seed, define, start, ready.",
            ["group", "phase"],
            buckets=PROVISION_BUCKETS,
            registry=r,
        )
        self.libvirt_duration = Histogram(
            f"{p}_libvirt_call_duration_seconds",
            "Time of one libvirt call.",
            ["op"],
            buckets=LIBVIRT_BUCKETS,
            registry=r,
        )
        self.libvirt_errors = Counter(
            f"{p}_libvirt_errors_total", "Failed libvirt calls.", ["op", "error_class"], registry=r
        )
        self.reconnects = Counter(
            f"{p}_libvirt_reconnects_total", "Connections to libvirt reopened.", registry=r
        )
        self.capacity_refusals = Counter(
            f"{p}_capacity_refusals_total", "Clones refused for lack of host memory.", ["group"], registry=r
        )
        self._define_serving(r)

    def _define_serving(self, r: CollectorRegistry) -> None:
        p = PREFIX
        self.lb_errors = Counter(
            f"{p}_lb_errors_total",
            "Load-balancer operations not confirmed (a member then waits, uncounted, and is never destroyed"
            " early).",
            ["group", "op", "error_class"],
            registry=r,
        )
        self.hook_runs = Counter(
            f"{p}_lifecycle_hook_runs_total",
            "Lifecycle hooks run, by result and by how it was reached (decided or a default).",
            ["group", "event", "result", "how"],
            registry=r,
        )
        self.drain_duration = Histogram(
            f"{p}_drain_duration_seconds",
            "From drain start to the member leaving its balancers: idle, or cut at drain_timeout.",
            ["group", "outcome"],
            buckets=PROVISION_BUCKETS,
            registry=r,
        )
        self.lookalikes = Gauge(
            f"{p}_lookalike_volumes",
            "Volumes named like ours but not provably ours (or in use), left alone by the last reconciles.",
            registry=r,
        )
        self._lookalikes: dict[str, int] = {}

    def _define_process(self, r: CollectorRegistry) -> None:
        p = PREFIX
        self.loop_lag = Histogram(
            f"{p}_event_loop_lag_seconds",
            "Overshoot of a short sleep on the event loop.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.build = Info(f"{p}_build", "Version of the running daemon.", registry=r)
        self.build.info({"version": autoscaler.__version__, "python_version": platform.python_version()})

    # --- engine ---------------------------------------------------------------------------------

    def publish(self, group: str, snapshot: groups.GroupSnapshot) -> None:
        """Replace the group's snapshot; the next scrape shows it.

        A group's first snapshot also starts its operation histograms at zero: a series born at
        its first observation has no earlier sample, so `rate()` over it stays zero and the
        dashboard's p95 shows nothing until the second clone or destroy.
        """
        if group not in self._snapshots:
            self.clone_duration.labels(group)
            self.destroy_duration.labels(group)
        self._snapshots[group] = snapshot

    def watch_unmanaged(self, count: Callable[[], Mapping[str, int]]) -> None:
        """Export `count()` (our domains per group without a policy) at every scrape."""
        self.registry.register(groups.UnmanagedCollector(count))

    def forget(self, group: str) -> None:
        """Stop exporting a group's state and series (its policy was removed).

        The series labelled with the group are dropped by the next `sweep` (one pass over every
        series, whatever the number of groups removed at once), so their memory goes too.
        """
        self._snapshots.pop(group, None)
        self._forgotten.add(group)

    def sweep(self) -> int:
        """Drop every series of the groups forgotten since the last sweep; returns how many.

        prometheus_client has no public listing of a metric's children, hence `_metrics`.
        """
        return sum(1 for _ in self._sweep_steps())

    async def sweep_gradually(self, batch: int = 1000) -> int:
        """`sweep`, yielding to the event loop every `batch` series (10,000 groups have 70,000)."""
        dropped = 0
        for _ in self._sweep_steps():
            dropped += 1
            if dropped % batch == 0:
                await asyncio.sleep(0)
        return dropped

    def _sweep_steps(self) -> Iterator[None]:
        """Remove one forgotten series per step."""
        forgotten, self._forgotten = self._forgotten, set()
        if not forgotten:
            return
        for metric in self._per_group:
            position = metric._labelnames.index("group")
            for values in list(metric._metrics):
                if values[position] in forgotten:
                    with contextlib.suppress(KeyError):
                        metric.remove(*values)
                        yield

    def evaluated(self, group: str, result: str, seconds: float) -> None:
        """One evaluation ended: ok, skipped or error."""
        self.evaluations.labels(group, bounded(result)).inc()
        self.evaluation_duration.labels(group).observe(seconds)

    def decided(self, decision: model.Decision) -> None:
        """Count a decision and each stage that clipped it."""
        group = decision.group
        self.decisions.labels(group, decision.direction.value, decision_reason(decision)).inc()
        for stage in decision.trail:
            if stage.before != stage.after and stage.name not in NON_CLIPPING_STAGES:
                self.clipped.labels(group, bounded(stage.name)).inc()

    def scaled(
        self, group: str, direction: str, result: model.ScaleResult | None, error_class: str | None = None
    ) -> None:
        """One scale operation ended, with its result, or an error class when it raised."""
        self.scale_operations.labels(group, direction, scale_outcome(result, error_class)).inc()
        if result is not None:
            self.scaled_instances.labels(group, direction, "ok").inc(len(result.done))
            self.scaled_instances.labels(group, direction, "failed").inc(result.failed)

    def cloned(self, group: str, seconds: float) -> None:
        """One clone (overlay to started domain) finished."""
        self.clone_duration.labels(group).observe(seconds)

    def destroyed(self, group: str, seconds: float) -> None:
        """One instance was destroyed and removed."""
        self.destroy_duration.labels(group).observe(seconds)

    def replaced(self, group: str, reason: str) -> None:
        """A member was replaced (unhealthy, never ready, old generation...)."""
        self.replacements.labels(group, bounded(reason)).inc()

    def handler_restarted(self, group: str) -> None:
        """A group's handler crashed and was restarted."""
        self.handler_restarts.labels(group).inc()

    def forecast(self, group: str, predicted: float, observed: float | None = None) -> None:
        """The predictive forecast for now and, when known, how far off it was."""
        self.forecast_predicted.labels(group).set(predicted)
        if observed is not None and math.isfinite(observed):
            self.forecast_error.labels(group).set(abs(predicted - observed) / max(abs(observed), 1e-9))

    # --- sources --------------------------------------------------------------------------------

    def queried(
        self, group: str, check: str, source: str, seconds: float, error_class: str | None = None
    ) -> None:
        """One metric query finished (error_class None on success)."""
        self.query_duration.labels(source).observe(seconds)
        if error_class is not None:
            self.source_errors.labels(source, bounded(error_class)).inc()
            self.check_errors.labels(group, check, bounded(error_class)).inc()

    def check_input(self, group: str, check: str, check_input: model.CheckInput) -> None:
        """Count how a check's input was classified."""
        self.check_inputs.labels(group, check, model.input_kind(check_input)).inc()

    # --- policies -------------------------------------------------------------------------------

    def policy_reloaded(self, result: str, at: float) -> None:
        """A reload ran: ok, partial (some files rejected), error or unchanged."""
        self.policy_reloads.labels(bounded(result)).inc()
        if result in ("ok", "unchanged"):
            self.policy_reload_success.set(at)

    def policy_load_errors(self, problems_by_file: Mapping[str, int]) -> None:
        """Replace the per-file error gauge: files with problems now, and nothing for the others."""
        self.policy_errors.clear()
        for file, count in problems_by_file.items():
            if count:
                self.policy_errors.labels(file).set(count)

    # --- targets.TargetObserver -----------------------------------------------------------------

    def libvirt_call(self, op: str, seconds: float, error_class: str | None) -> None:
        """One blocking hypervisor call finished (error_class None on success)."""
        self.libvirt_duration.labels(bounded(op)).observe(seconds)
        if error_class is not None:
            self.libvirt_errors.labels(bounded(op), bounded(error_class)).inc()

    def provisioned(self, group: str, phase: str, seconds: float) -> None:
        """A provisioning phase finished: overlay, seed, define, start or ready."""
        self.provision_duration.labels(group, bounded(phase)).observe(seconds)

    def reconnected(self, uri: str) -> None:
        """The connection to a hypervisor was lost and opened again (the URI is not a label)."""
        self.reconnects.inc()

    def capacity_refused(self, group: str) -> None:
        """A clone was refused because the host lacked free memory plus the reserve."""
        self.capacity_refusals.labels(group).inc()

    def balancer_failed(self, group: str, op: str, error_class: str) -> None:
        """A load balancer did not confirm an operation."""
        self.lb_errors.labels(group, bounded(op), bounded(error_class)).inc()

    def hook_ran(self, group: str, event: str, result: str, how: str) -> None:
        """A lifecycle hook ended."""
        self.hook_runs.labels(group, bounded(event), bounded(result), bounded(how)).inc()

    def drain_ended(self, group: str, outcome: str, seconds: float) -> None:
        """A member left its balancers."""
        self.drain_duration.labels(group, bounded(outcome)).observe(seconds)

    def lookalike_volumes(self, host: str, count: int) -> None:
        """A reconcile of one host left `count` look-alike volumes alone (the gauge sums the hosts)."""
        self._lookalikes[host] = count
        self.lookalikes.set(sum(self._lookalikes.values()))

    # --- process --------------------------------------------------------------------------------

    def loop_lagged(self, seconds: float) -> None:
        """One loop-lag probe: how late a short sleep woke up."""
        self.loop_lag.observe(max(seconds, 0.0))

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (see CONTENT_TYPE)."""
        return exposition.generate_latest(self.registry)


class _Sweeper:
    """A collector that exports nothing: collecting it drops the forgotten groups' series first."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        """No series of its own."""
        return []

    def collect(self) -> list[Any]:
        """Sweep, export nothing."""
        self._metrics.sweep()
        return []


if TYPE_CHECKING:

    def _is_target_observer(metrics: Metrics) -> targets.TargetObserver:
        """Lets mypy prove that Metrics satisfies the TargetObserver protocol."""
        return metrics
