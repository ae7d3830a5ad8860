"""Registries from a `kind:` in the daemon settings to the object that implements it (no plugins).

Kept apart from the daemon so that importing the daemon does not import libvirt: the KVM target is
only built when the settings ask for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
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
    from autoscaler.targets import ownership
    from autoscaler.virt import gateway

MiB = 1024 * 1024


def _prometheus(config: PrometheusSettings, _target: targets.Target, max_bytes: int) -> sources.MetricSource:
    from autoscaler.sources import prometheus

    return prometheus.PrometheusSource(
        config.url,
        timeout=config.timeout,
        bearer_token_file=config.bearer_token_file,
        tls_ca=config.tls_ca,
        max_bytes=max_bytes,
    )


def _exporter(config: ExporterSettings, _target: targets.Target, max_bytes: int) -> sources.MetricSource:
    from autoscaler.sources import exporter

    return exporter.ExporterSource(
        config.url,
        timeout=config.timeout,
        bearer_token_file=config.bearer_token_file,
        min_rate_window=config.min_rate_window,
        max_bytes=max_bytes,
    )


def _libvirt(_config: LibvirtSourceSettings, target: targets.Target, _max_bytes: int) -> sources.MetricSource:
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
    configs: Mapping[str, SourceSettings], target: targets.Target, max_bytes: int = 8 * 1024 * 1024
) -> dict[str, sources.MetricSource]:
    """Every configured metric source by name; HTTP answers are read up to `max_bytes`."""
    return {name: SOURCES[config.kind](config, target, max_bytes) for name, config in configs.items()}


def _kvm(
    config: TargetSettings,
    metrics: telemetry.Metrics,
    state_dir: str,
    coordinated: Coordinated | None,
    ledger: ownership.Ledger | None,
) -> targets.Target:
    from autoscaler.targets import kvm, lifecycle, ownership, reconcile

    settings = kvm.KvmSettings(
        memory_reserve=config.memory_reserve_mib * MiB,
        reconcile_interval=config.reconcile_interval,
        stop=lifecycle.StopTimings(shutdown_timeout=config.shutdown_timeout),
        grace=reconcile.Grace(creating_stopped=config.stuck_create_grace, overlay=config.orphan_grace),
        vcpu_reserve=config.vcpu_reserve,
        max_vcpu_ratio=config.max_vcpu_ratio,
        host_dead_after=config.host_dead_after,
    )
    if ledger is None:
        ledger = ownership.FileLedger(file_ledger_directory(state_dir))
    if coordinated is None:
        return kvm.KvmTarget(config.uris, observer=metrics, settings=settings, ledger=ledger)
    return kvm.KvmTarget(
        config.uris,
        observer=metrics,
        settings=settings,
        ledger=ledger,
        fence=coordinated.fence,
        acting=coordinated.acting,
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


TARGETS: dict[
    str,
    Callable[
        [TargetSettings, telemetry.Metrics, str, Coordinated | None, ownership.Ledger | None],
        targets.Target,
    ],
] = {"kvm": _kvm}


def file_ledger_directory(state_dir: str | Path) -> Path:
    """Where a daemon acting alone records the volumes it created."""
    return Path(state_dir) / "volumes"


def target(
    config: TargetSettings,
    metrics: telemetry.Metrics,
    state_dir: str,
    coordinated: Coordinated | None = None,
    ledger: ownership.Ledger | None = None,
) -> targets.Target:
    """The configured target; what it must remember across restarts lives under `state_dir`, and
    with coordination its every mutating call is fenced. `ledger`: where the volumes it creates
    are recorded (None: a file ledger in the state directory; with coordination, etcd's)."""
    return TARGETS[config.kind](config, metrics, state_dir, coordinated, ledger)
