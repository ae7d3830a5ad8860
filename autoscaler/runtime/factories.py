"""Registries from a `kind:` in the daemon settings to the object that implements it (no plugins).

Kept apart from the daemon so that importing the daemon does not import libvirt: the KVM target is
only built when the settings ask for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from autoscaler import sources, targets
from autoscaler.settings import (
    ExporterSettings,
    LibvirtSourceSettings,
    PrometheusSettings,
    SourceSettings,
    TargetSettings,
)
from autoscaler.telemetry import metrics as telemetry

if TYPE_CHECKING:
    from autoscaler.virt import gateway

MiB = 1024 * 1024


def _prometheus(config: PrometheusSettings, _target: targets.Target) -> sources.MetricSource:
    from autoscaler.sources import prometheus

    return prometheus.PrometheusSource(
        config.url, timeout=config.timeout, bearer_token_file=config.bearer_token_file, tls_ca=config.tls_ca
    )


def _exporter(config: ExporterSettings, _target: targets.Target) -> sources.MetricSource:
    from autoscaler.sources import exporter

    return exporter.ExporterSource(
        config.url,
        timeout=config.timeout,
        bearer_token_file=config.bearer_token_file,
        min_rate_window=config.min_rate_window,
    )


def _libvirt(_config: LibvirtSourceSettings, target: targets.Target) -> sources.MetricSource:
    from autoscaler.sources import domstats

    if not hasattr(target, "refresh_load"):
        raise ValueError("the libvirt metric source needs the kvm target")
    return domstats.DomainStatsSource(target)  # type: ignore[arg-type]


SOURCES: dict[str, Callable[..., sources.MetricSource]] = {
    "prometheus": _prometheus,
    "exporter": _exporter,
    "libvirt": _libvirt,
}


def source_map(
    configs: Mapping[str, SourceSettings], target: targets.Target
) -> dict[str, sources.MetricSource]:
    """Every configured metric source by name."""
    return {name: SOURCES[config.kind](config, target) for name, config in configs.items()}


def _kvm(
    config: TargetSettings, metrics: telemetry.Metrics, coordinated: Coordinated | None
) -> targets.Target:
    from autoscaler.targets import kvm, lifecycle

    settings = kvm.KvmSettings(
        memory_reserve=config.memory_reserve_mib * MiB,
        reconcile_interval=config.reconcile_interval,
        stop=lifecycle.StopTimings(shutdown_timeout=config.shutdown_timeout),
        vcpu_reserve=config.vcpu_reserve,
        max_vcpu_ratio=config.max_vcpu_ratio,
        host_dead_after=config.host_dead_after,
    )
    if coordinated is None:
        return kvm.KvmTarget(config.uris, observer=metrics, settings=settings)
    return kvm.KvmTarget(
        config.uris, observer=metrics, settings=settings, fence=coordinated.fence, acting=coordinated.acting
    )


class Coordinated(Protocol):
    """What a target needs from coordination (`coordination.Coordinator` has it)."""

    @property
    def fence(self) -> gateway.Fence:
        """Asked before every mutating libvirt call."""
        ...

    def acting(self) -> bool:
        """True while this daemon leads."""
        ...


TARGETS: dict[str, Callable[[TargetSettings, telemetry.Metrics, Coordinated | None], targets.Target]] = {
    "kvm": _kvm
}


def target(
    config: TargetSettings, metrics: telemetry.Metrics, coordinated: Coordinated | None = None
) -> targets.Target:
    """The configured target; with coordination, its every mutating call is fenced."""
    return TARGETS[config.kind](config, metrics, coordinated)
