"""The daemon's own configuration (not the policies): one YAML file read into frozen dataclasses.

Like policy files, a settings file is checked in one pass: every problem is reported with its
file, line and key path (`autoscaler.yaml:12:5: sources.prom.url: ...`) and the daemon refuses to
start on any of them. Durations are written with a unit (`10s`, `5m`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import yaml
from pydantic import AfterValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass

from autoscaler.errors import PolicyError
from autoscaler.policy import locate, safeyaml, spec

Duration = spec.Duration
PositiveDuration = spec.PositiveDuration
_STRICT = ConfigDict(extra="forbid")


def _bind_address(text: str) -> str:
    """An address the HTTP endpoint can bind: an IP address or 'localhost', never a name to resolve."""
    if text == "localhost":
        return text
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f"expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1 (or 'localhost'), got {text!r}"
        ) from None
    return text


BindAddress = Annotated[str, AfterValidator(_bind_address)]


@dataclass(frozen=True, config=_STRICT)
class HttpSettings:
    """The daemon's HTTP endpoint: metrics, health, status, explain and the operator actions."""

    listen: BindAddress = "127.0.0.1"
    """Address to bind; loopback unless a reverse proxy or Prometheus elsewhere must reach it."""
    port: Annotated[int, Field(ge=0, le=65535)] = 9464
    """TCP port (0 picks a free one)."""
    token_file: str | None = None
    """File holding the bearer token that pause, resume and reload require; None disables them."""


@dataclass(frozen=True, config=_STRICT)
class PrometheusSettings:
    """A Prometheus server answering PromQL (instant and range queries)."""

    kind: Literal["prometheus"]
    url: str
    """Base URL, e.g. http://127.0.0.1:9090."""
    timeout: PositiveDuration = 10.0
    """Per request."""
    bearer_token_file: str | None = None
    """Sent as `Authorization: Bearer`; re-read on each request."""
    tls_ca: str | None = None
    """CA bundle for https URLs."""


@dataclass(frozen=True, config=_STRICT)
class ExporterSettings:
    """An exporter's /metrics page scraped directly (no Prometheus needed)."""

    kind: Literal["exporter"]
    url: str
    """Full URL of the metrics page, e.g. http://127.0.0.1:9100/metrics."""
    timeout: PositiveDuration = 5.0
    """Per scrape."""
    bearer_token_file: str | None = None
    """Sent as `Authorization: Bearer`."""
    min_rate_window: PositiveDuration = 10.0
    """A `rate()` spans at least this long (checks of groups ticking a moment apart share it)."""


@dataclass(frozen=True, config=_STRICT)
class LibvirtSourceSettings:
    """CPU utilisation of a group's members read from libvirt itself (query: `<group>:cpu`)."""

    kind: Literal["libvirt"]


SourceSettings = Annotated[
    PrometheusSettings | ExporterSettings | LibvirtSourceSettings, Field(discriminator="kind")
]


@dataclass(frozen=True, config=_STRICT)
class TargetSettings:
    """Where instances run."""

    kind: Literal["kvm"] = "kvm"
    """Only libvirt/KVM for now."""
    uris: tuple[str, ...] = ("qemu:///system",)
    """libvirt URIs of the hosts this daemon drives (test:///... for the test driver)."""
    memory_reserve_mib: Annotated[int, Field(ge=0)] = 1024
    """Free memory every host keeps beyond its domains."""
    reconcile_interval: PositiveDuration = 300.0
    """Full reconcile of every host this often (also at start and after each reconnect)."""
    shutdown_timeout: Duration = 30.0
    """On scale-in, wait this long for a guest to power off (ACPI) before destroying it."""
    orphan_grace: PositiveDuration = 300.0
    """A volume this daemon created whose domain is gone is deleted once older than this."""
    stuck_create_grace: PositiveDuration = 120.0
    """A clone defined but never started (a crash between the steps) is removed after this."""
    vcpu_reserve: Annotated[int, Field(ge=0)] = 0
    """Host CPUs kept free of clones' vCPUs (placement never allots beyond cpus - vcpu_reserve)."""
    max_vcpu_ratio: Annotated[float, Field(gt=0)] = 4.0
    """vCPUs of running domains allowed per usable host CPU (overcommit limit)."""
    host_dead_after: PositiveDuration = 300.0
    """An unreachable host's members count as unknown (no tick acts) until then; after it they
    count as gone and are replaced on the other hosts."""


@dataclass(frozen=True, config=_STRICT)
class EngineSettings:
    """How the groups are run."""

    max_concurrent_actions: Annotated[int, Field(ge=1)] = 2
    """Scale actions running at once across all groups (start storms are CPU-bound)."""
    slot_timeout: PositiveDuration = 120.0
    """A group that waits longer than this for a slot gives up until its next tick."""
    query_timeout: PositiveDuration = 10.0
    """A metric query that takes longer makes its check Failed(timeout)."""
    backoff_initial: PositiveDuration = 10.0
    """First wait after a temporary target error; doubles up to backoff_max."""
    backoff_max: PositiveDuration = 300.0
    """Longest wait after temporary target errors."""
    history_refresh: PositiveDuration = 300.0
    """How often predictive groups re-read their history."""
    journal_size: Annotated[int, Field(ge=1)] = 100
    """Decisions kept per group for /status and /explain."""
    policy_poll: PositiveDuration = 5.0
    """How often the policy files' mtimes and sizes are compared (reload without SIGHUP)."""
    shutdown_grace: Duration = 60.0
    """How long in-flight actions may run on after SIGTERM before they are abandoned."""
    jitter: Duration = 2.0
    """Random delay added to each group's tick, so groups do not all evaluate at once."""
    first_evaluations_per_second: Annotated[float, Field(gt=0)] = 500.0
    """Pace of the first evaluations of groups that start together (the daemon's start, a reload
    adding many): each group's first comes at a fixed offset (from a hash of its name) within the
    window they take at this pace, at most its own interval; a lone group starts at once."""
    max_loop_lag: PositiveDuration = 5.0
    """Event-loop lag above which the systemd watchdog is no longer fed."""


_POLICY_LIMITS = safeyaml.Limits()


@dataclass(frozen=True, config=_STRICT)
class LimitSettings:
    """Bounds on what operators' files and metric endpoints can make the daemon read and hold."""

    policy_file_bytes: Annotated[int, Field(ge=1024)] = _POLICY_LIMITS.file_bytes
    """Largest policy file read; a larger one is rejected (and keeps its last good version)."""
    yaml_depth: Annotated[int, Field(ge=8, le=200)] = _POLICY_LIMITS.depth
    """Deepest nesting of mappings and lists in a policy file."""
    groups: Annotated[int, Field(ge=1)] = _POLICY_LIMITS.groups
    """Groups one daemon manages; a file that would go beyond is rejected."""
    checks_per_group: Annotated[int, Field(ge=1)] = _POLICY_LIMITS.checks_per_group
    """Checks in one group."""
    response_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    """Largest answer read from an exporter or Prometheus; a larger one fails the query."""

    def policy(self) -> safeyaml.Limits:
        """The limits a policy file is read under."""
        return safeyaml.Limits(
            file_bytes=self.policy_file_bytes,
            depth=self.yaml_depth,
            checks_per_group=self.checks_per_group,
            groups=self.groups,
        )


@dataclass(frozen=True, config=_STRICT)
class CoordinationSettings:
    """Several daemons, one acting: leader election, fencing and group memory in etcd (v3 API)."""

    endpoints: Annotated[tuple[str, ...], Field(min_length=1)]
    """Every etcd member's client URL, e.g. https://10.0.0.1:2379 (all of them: a dead one is skipped)."""
    name: str | None = None
    """How this daemon calls itself in status, logs and etcd (default: the host name)."""
    prefix: str = "/autoscaler"
    """Key prefix; daemons sharing one prefix elect one leader among them."""
    lease_ttl: Annotated[int, Field(ge=2, le=60)] = 5
    """Seconds a leader that stopped renewing keeps the lease (failover takes about this long)."""
    margin: PositiveDuration = 1.0
    """A leader stops acting this long before its lease could expire (covers one fence round trip)."""
    request_timeout: PositiveDuration = 1.0
    """Per etcd request; a slow member is then skipped for the next endpoint."""
    campaign_interval: PositiveDuration = 0.25
    """How often the leader proves through etcd that it still leads (a linearizable transaction);
    also a standby's poll of the leader key when watch is off."""
    watch: bool = True
    """Follow etcd keys through watches instead of polling them: a standby campaigns the moment
    the leader key is deleted (a clean stop or an expired lease) instead of every
    campaign_interval, and operator pauses are read from a watch instead of once per group and
    tick. Off: poll (e.g. behind a proxy that cuts long HTTP streams)."""
    standby_poll_interval: PositiveDuration = 5.0
    """With watch: how often a standby campaigns anyway, in case its watch missed the
    deletion (a hung etcd member holding the stream). Bounds the take-over delay in that case."""
    on_unreachable_at_start: Literal["wait", "fail"] = "wait"
    """When no etcd member answers at startup: keep trying (and stay unready) or exit with an error."""
    start_timeout: PositiveDuration = 30.0
    """With on_unreachable_at_start: fail, how long startup tries before giving up."""
    tls_ca: str | None = None
    """CA bundle that signed the etcd members' certificates (https endpoints)."""
    tls_cert: str | None = None
    """Client certificate, for etcd's --client-cert-auth."""
    tls_key: str | None = None
    """Key of the client certificate."""
    username: str | None = None
    """etcd user (etcd's own auth); its password is read from password_file."""
    password_file: str | None = None
    """File holding the etcd user's password."""

    @pydantic.model_validator(mode="after")
    def _margin_below_ttl(self) -> CoordinationSettings:
        """A margin of the whole TTL would leave a leader no time in which it may act."""
        if self.margin >= self.lease_ttl / 2:
            raise ValueError(
                f"margin ({self.margin:g}s) must be below half the lease_ttl ({self.lease_ttl}s)"
            )
        return self


@dataclass(frozen=True, config=_STRICT)
class LogSettings:
    """Structured logs on stdout."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


@dataclass(frozen=True, config=_STRICT)
class DiscoverySettings:
    """Prometheus service discovery; GET /v1/targets (http_sd) always serves the same list."""

    file: str | None = None
    """Also write the list to this file for file_sd (atomically: temp file, fsync, rename)."""
    interval: PositiveDuration = 5.0
    """How often the file is brought up to date (it is rewritten only when the list changed)."""


@dataclass(frozen=True, config=_STRICT)
class Settings:
    """Everything the daemon needs besides the policies."""

    policies: tuple[str, ...] = ("/etc/autoscaler/policies",)
    """Policy files or directories of them."""
    state_dir: str = "/var/lib/autoscaler"
    """Where group memory is kept between restarts (systemd StateDirectory)."""
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    discovery: DiscoverySettings = dataclasses.field(default_factory=DiscoverySettings)
    """Service discovery of the groups' members for Prometheus."""
    sources: dict[str, SourceSettings] = dataclasses.field(default_factory=dict)
    """Metric sources by the name checks use in their `source:` field."""
    target: TargetSettings = dataclasses.field(default_factory=TargetSettings)
    engine: EngineSettings = dataclasses.field(default_factory=EngineSettings)
    limits: LimitSettings = dataclasses.field(default_factory=LimitSettings)
    log: LogSettings = dataclasses.field(default_factory=LogSettings)
    coordination: CoordinationSettings | None = None
    """Absent: this daemon acts alone. Present: daemons elect one acting leader through etcd."""


_ADAPTER = pydantic.TypeAdapter(Settings)


def _problems(file: str, root: yaml.Node, exc: pydantic.ValidationError) -> list[str]:
    found = [locate.from_pydantic(file, root, error, Settings) for error in exc.errors()]
    return [str(p) for p in sorted(found, key=lambda p: (p.line, p.column))]


def parse(text: str, file: str = "<settings>", base: Path | None = None) -> Settings:
    """Settings from YAML text; relative policy and state paths are resolved against `base`."""
    documents, problems = safeyaml.documents(text, file, safeyaml.Limits())
    if problems:
        raise PolicyError([str(p) for p in problems])
    if len(documents) > 1:
        raise PolicyError([f"{file}:1:1: expected one YAML document of settings, found {len(documents)}"])
    if not documents or documents[0][1] is None:
        return Settings()
    root, data = documents[0]
    if not isinstance(data, dict):
        raise PolicyError([f"{file}:1:1: expected a mapping of settings"])
    try:
        settings = _ADAPTER.validate_python(data, context={"from_file": True})
    except pydantic.ValidationError as exc:
        raise PolicyError(_problems(file, root, exc)) from exc
    return _resolved(settings, base) if base is not None else settings


def _resolved(settings: Settings, base: Path) -> Settings:
    policies = tuple(str(base / p) for p in settings.policies)
    return dataclasses.replace(settings, policies=policies, state_dir=str(base / settings.state_dir))


def load(path: str | Path) -> Settings:
    """Settings from a file; PolicyError listing every problem (with file:line) when invalid."""
    file = Path(path)
    text, problems = safeyaml.read(file, safeyaml.Limits())
    if text is None:
        raise PolicyError([str(p) for p in problems])
    return parse(text, str(file), file.resolve().parent)
