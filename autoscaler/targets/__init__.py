"""The seam between the engine and whatever runs instances: the engine asks, a Target does.

Implementations: `targets.kvm` (libvirt). Tests use an in-memory fake at this seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from autoscaler import model
from autoscaler.policy import spec


class Target(Protocol):
    """Reads and changes the membership of groups."""

    async def inventory(self, group: str) -> model.GroupInventory:
        """The group's members as last observed (a cache kept current by events and reconciles)."""
        ...

    async def scale_out(self, policy: spec.GroupPolicy, count: int) -> model.ScaleResult:
        """Create `count` new instances of the group; returns what was created."""
        ...

    async def scale_in(self, policy: spec.GroupPolicy, victims: Sequence[str]) -> model.ScaleResult:
        """Remove the named instances of the group (only ones the group owns)."""
        ...


@runtime_checkable
class ProvisionTimes(Protocol):
    """A target that measures how long its clones take to serve (the KVM target does)."""

    def provision_seconds(self, group: str) -> float | None:
        """The p90 of recent clone-to-ready durations of the group, None before the first one."""
        ...


class TargetObserver(Protocol):
    """What a Target reports for telemetry; `telemetry.metrics.Metrics` implements it."""

    def libvirt_call(self, op: str, seconds: float, error_class: str | None) -> None:
        """One blocking hypervisor call finished (error_class None on success)."""
        ...

    def provisioned(self, group: str, phase: str, seconds: float) -> None:
        """A provisioning phase finished: overlay, seed, define, start or ready (clone request to ready)."""
        ...

    def cloned(self, group: str, seconds: float) -> None:
        """One new member was cloned and started (overlay to running domain)."""
        ...

    def destroyed(self, group: str, seconds: float) -> None:
        """One domain of the group was stopped, undefined and its overlay deleted."""
        ...

    def reconnected(self, uri: str) -> None:
        """The connection to a hypervisor was lost and opened again."""
        ...

    def capacity_refused(self, group: str) -> None:
        """A clone was refused because the host lacked free memory plus the reserve."""
        ...

    def balancer_failed(self, group: str, op: str, error_class: str) -> None:
        """A load balancer did not confirm `op` (verify, register, drain, remove, reconcile)."""
        ...

    def hook_ran(self, group: str, event: str, result: str, how: str) -> None:
        """A lifecycle hook ended: result continue/abandon, how decided/default_timeout/default_error."""
        ...

    def drain_ended(self, group: str, outcome: str, seconds: float) -> None:
        """A member left its balancers: outcome idle (no session left) or timeout (cut)."""

    def lookalike_volumes(self, host: str, count: int) -> None:
        """A reconcile of `host` left this many volumes alone: named like ours, not provably ours."""
        ...


class NullObserver:
    """An observer that records nothing (tests, `autoscaler check`)."""

    def libvirt_call(self, op: str, seconds: float, error_class: str | None) -> None:
        """Ignore the call."""

    def provisioned(self, group: str, phase: str, seconds: float) -> None:
        """Ignore the phase."""

    def cloned(self, group: str, seconds: float) -> None:
        """Ignore the clone."""

    def destroyed(self, group: str, seconds: float) -> None:
        """Ignore the removal."""

    def reconnected(self, uri: str) -> None:
        """Ignore the reconnect."""

    def capacity_refused(self, group: str) -> None:
        """Ignore the refusal."""

    def balancer_failed(self, group: str, op: str, error_class: str) -> None:
        """Ignore the failure."""

    def hook_ran(self, group: str, event: str, result: str, how: str) -> None:
        """Ignore the hook."""

    def drain_ended(self, group: str, outcome: str, seconds: float) -> None:
        """Ignore the drain."""

    def lookalike_volumes(self, host: str, count: int) -> None:
        """Ignore the count."""
