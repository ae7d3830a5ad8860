"""The policy format as frozen models: one definition serves validation, defaults and the JSON Schema.

Every field carries a description, which becomes the editor hint in policies/schema.json.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from autoscaler.policy import durations
from autoscaler.policy import serving as serving_spec

Duration = durations.Duration
PositiveDuration = durations.PositiveDuration
"""The duration types live in `durations`, which `serving` shares; named here for the models below."""


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')") from exc
    return name


TimeZone = Annotated[str, AfterValidator(_known_zone)]
"""An IANA time zone name, checked when the policy loads."""

GROUP_NAME = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
CHECK_NAME = r"^[a-z0-9_][a-z0-9_-]{0,62}$"


class Spec(BaseModel):
    """Base for every policy model: immutable, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- strategies -------------------------------------------------------------------------------


class Tolerance(Spec):
    """The band around the target inside which a check holds the count (HPA's configurable tolerance)."""

    up: float = Field(
        0.1, ge=0, description="Scale up only when value / target exceeds 1 + up; may exceed 1."
    )
    down: float = Field(0.1, ge=0, lt=1, description="Scale in only when value / target is below 1 - down.")


def _tolerance_shorthand(value: object) -> object:
    """A single number is the same tolerance on both sides, and must stay below 1."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < 1:
            raise ValueError(
                f"a single tolerance must be >= 0 and < 1, got {value:g}; give {{up: U, down: D}} for an"
                " up tolerance of 1 or more"
            )
        return {"up": value, "down": value}
    return value


_FRACTION = {"type": "number", "minimum": 0}
ToleranceBand = Annotated[
    Tolerance,
    BeforeValidator(_tolerance_shorthand),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                {
                    "type": "object",
                    "properties": {"up": _FRACTION, "down": {**_FRACTION, "exclusiveMaximum": 1}},
                    "additionalProperties": False,
                },
            ],
            "default": 0.1,
            "examples": [0.1, {"up": 0.05, "down": 0.1}],
        }
    ),
]
"""A tolerance as written: one number for both sides, or {up, down}."""


class TargetTracking(Spec):
    """Keep a per-instance average (e.g. CPU utilisation) at a target, as the Kubernetes HPA does."""

    kind: Literal["target_tracking"] = Field(description="desired = ceil(ready * value / target)")
    target: float = Field(gt=0, description="The value to hold the metric at, e.g. 0.7 for 70 % CPU.")
    tolerance: ToleranceBand = Field(
        default_factory=Tolerance,
        description="Do nothing while 1 - down <= value / target <= 1 + up (exact decimal arithmetic):"
        " one number for both sides, or {up: U, down: D}.",
    )


class PerInstance(Spec):
    """Size the group so that each instance carries a given share of a total (e.g. sessions)."""

    kind: Literal["per_instance"] = Field(description="desired = ceil(total / per_instance)")
    per_instance: float = Field(gt=0, description="How much of the total one instance should carry.")
    tolerance: ToleranceBand = Field(
        default_factory=Tolerance,
        description="Do nothing while the load per current instance is this close to target:"
        " one number for both sides, or {up: U, down: D}.",
    )


class Step(Spec):
    """One band of a threshold strategy and what to do while the metric is inside it."""

    lower: float | None = Field(None, description="Inclusive lower bound of the band; none means -infinity.")
    upper: float | None = Field(None, description="Exclusive upper bound of the band; none means +infinity.")
    change: int | None = Field(None, description="Add (or, when negative, remove) this many instances.")
    percent: float | None = Field(None, description="Change the count by this percentage (negative shrinks).")
    set: int | None = Field(None, ge=0, description="Set the count to exactly this value.")


class Threshold(Spec):
    """Step scaling: the band that holds the newest value decides the change."""

    kind: Literal["threshold"]
    steps: tuple[Step, ...] = Field(
        min_length=1, description="Bands, checked in order; the first match wins."
    )
    trigger_samples: int = Field(
        1,
        ge=1,
        description="How many of the newest samples, over consecutive evaluations, must lie in the band"
        " before it applies.",
    )


class Fixed(Spec):
    """Always propose the same count (useful with schedules, or as a floor)."""

    kind: Literal["fixed"]
    count: int = Field(ge=0, description="The count to propose.")


class PassThrough(Spec):
    """The metric already is the desired count (e.g. computed by a recording rule)."""

    kind: Literal["pass_through"]


Strategy = Annotated[
    TargetTracking | PerInstance | Threshold | Fixed | PassThrough, Field(discriminator="kind")
]


# --- checks -----------------------------------------------------------------------------------


class OnMissing(Spec):
    """What a check proposes while its data is missing, stale, NaN or failed: hold unless told otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    scale_up: int | None = Field(None, ge=1, description="Add this many instances per evaluation.")
    up_to: int | None = Field(
        None,
        ge=1,
        description="scale_up adds at most this many above the count last seen while the data was fresh.",
    )
    for_: PositiveDuration | None = Field(
        None,
        alias="for",
        description="scale_up adds instances only this long after the data was last fresh; then it holds.",
    )
    fallback: int | None = Field(
        None, ge=0, description="Propose this count (a scale-in still never happens)."
    )

    @property
    def unbounded(self) -> bool:
        """A scale_up with neither up_to nor for: a long outage walks the group to its max."""
        return self.scale_up is not None and self.up_to is None and self.for_ is None


def _on_missing_shorthand(value: object) -> object:
    if value == "hold":
        return {}
    if isinstance(value, str):
        raise ValueError(
            f"expected 'hold', {{scale_up: N, up_to: M, for: D}} or {{fallback: N}}, got {value!r}"
        )
    return value


OnMissingRule = Annotated[
    OnMissing,
    BeforeValidator(_on_missing_shorthand),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "hold"},
                {
                    "type": "object",
                    "properties": {
                        "scale_up": {"type": "integer", "minimum": 1},
                        "up_to": {"type": "integer", "minimum": 1},
                        "for": {
                            "type": "string",
                            "pattern": durations.PATTERN,
                            "not": {"pattern": durations.ZERO_PATTERN},
                            "examples": ["30m", "2h"],
                        },
                    },
                    "required": ["scale_up"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"fallback": {"type": "integer", "minimum": 0}},
                    "required": ["fallback"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class Check(Spec):
    """One metric query and the strategy that turns its value into a count."""

    name: str = Field(pattern=CHECK_NAME, description="Unique within the group; used in logs and metrics.")
    source: str = Field(
        description="A metric source named in the daemon config: prometheus, exporter, libvirt..."
    )
    query: str = Field(
        "", description="PromQL for prometheus; a metric selector for exporter; 'cpu' for libvirt."
    )
    strategy: Strategy
    max_staleness: PositiveDuration = Field(
        120.0, description="Older samples count as stale, never as current."
    )
    on_missing: OnMissingRule = Field(
        default_factory=OnMissing,
        description="What missing, stale, NaN or failed data means: hold, {scale_up: N} (bounded by"
        " up_to: M and/or for: D) or {fallback: N}.",
    )


# --- behaviour --------------------------------------------------------------------------------


class RateLimit(Spec):
    """At most this many instances, or this percentage of the group, per period (the larger wins)."""

    instances: int | None = Field(None, ge=1, description="Largest change in instances per period.")
    percent: float | None = Field(
        None, gt=0, description="Largest change as a percentage of the group per period."
    )
    period: PositiveDuration = Field(60.0, description="The rolling window the limits apply to.")


class ChurnBudget(Spec):
    """At most this many instances created plus removed per period, both directions together."""

    max_changes: int = Field(ge=1, description="Creates plus removals allowed in any rolling period.")
    period: PositiveDuration = Field(3600.0, description="The rolling window the budget applies to.")


class Direction(Spec):
    """How fast one direction may move."""

    stabilization: Duration = Field(
        0.0, description="Window of past recommendations: up takes their minimum, down their maximum."
    )
    cooldown: Duration = Field(
        0.0, description="After a change in this direction, wait this long before the next."
    )
    rate: RateLimit | None = Field(None, description="Rate limit for this direction; none means unlimited.")
    pacing: Literal["window", "forecast"] = Field(
        "window",
        description="scale_down only: 'forecast' lets scale-in follow the forecast's fall (down to what the"
        " checks want now and the forecast needs one lead time ahead) instead of holding the highest"
        " recommendation of the stabilization window; the window still applies while there is no forecast."
        " Needs predictive.mode: active.",
    )


def _default_up() -> Direction:
    return Direction(rate=RateLimit(instances=4, percent=100, period=60.0))


def _default_down() -> Direction:
    return Direction(stabilization=300.0, cooldown=300.0, rate=RateLimit(instances=1, period=60.0))


class Schedule(Spec):
    """A calendar window that raises the floor or lowers the ceiling while it is open."""

    name: str = Field("", description="Shown in decisions, e.g. 'office-hours'.")
    cron: str = Field(
        description="When the window opens, five standard cron fields, e.g. '30 7 * * mon-fri' or"
        " '30 7 * * 1-5' (0 and 7 are Sunday; a restricted day of month OR weekday matches)."
    )
    timezone: str = Field("UTC", description="IANA time zone for the cron fields, e.g. Europe/Berlin.")
    duration: PositiveDuration = Field(description="How long the window stays open after each opening.")
    min: int | None = Field(None, ge=0, description="Floor while the window is open.")
    max: int | None = Field(None, ge=0, description="Ceiling while the window is open.")


class Readiness(Spec):
    """When a new instance starts to count as capacity, and when a member counts as broken."""

    probe: Literal["none", "tcp", "guest_agent", "channel", "serial"] = Field(
        "none", description="How to tell the guest is up; 'none' trusts the warm-up alone."
    )
    port: int | None = Field(None, ge=1, le=65535, description="TCP port for the tcp probe.")
    channel: str = Field(
        "org.autoscaler.ready", description="virtio-serial channel name the guest signals on (channel probe)."
    )
    timeout: PositiveDuration = Field(
        600.0, description="A clone not ready after this long is removed and counted failed."
    )
    interval: PositiveDuration = Field(5.0, description="How often the probe runs.")
    failures: int = Field(3, ge=1, description="Consecutive failed probes after warm-up before replacement.")


def _yaml_off(value: object) -> object:
    """YAML 1.1 reads a bare `off` as false; in a mode field the operator meant the word."""
    return "off" if value is False else value


class Predictive(Spec):
    """Scale out ahead of a learned daily and weekly pattern; never scale in on a forecast alone."""

    mode: Annotated[Literal["off", "shadow", "active"], BeforeValidator(_yaml_off)] = Field(
        "off", description="shadow exports the forecast and its error without acting on it."
    )
    query: str = Field(
        "", description="Range-queryable expression of the group's total load (the daemon's input)."
    )
    source: str = Field("prometheus", description="Metric source for the history.")
    per_instance: float = Field(1.0, gt=0, description="Load one instance should carry at the target.")
    history: PositiveDuration = Field(
        1209600.0, description="How much history to learn from (default 14 days)."
    )
    lead: Duration | None = Field(
        None, description="How far ahead to forecast; default: measured clone-to-ready time plus warm-up."
    )
    headroom: float = Field(0.0, ge=0, description="Extra fraction of forecast load to provision for.")
    timezone: TimeZone = Field(
        "UTC", description="IANA time zone of the load's daily pattern, e.g. Europe/Berlin (DST followed)."
    )
    quantile: float = Field(
        0.9,
        ge=0.5,
        le=1.0,
        description="How cautious the forecast is: the quantile of past days' growth at this time of day."
        " Higher means fewer under-provisioned minutes and more instance-hours.",
    )
    recent: PositiveDuration = Field(
        180.0, description="The forecast grows the peak load of this newest stretch; longer releases slower."
    )
    days: int = Field(10, ge=1, le=35, description="Comparable past days (weekday or weekend) to learn from.")
    slack: PositiveDuration = Field(
        600.0,
        description="How far from the same clock time a past day's load still counts (a ramp a little"
        " early or late today); shorter holds less capacity for ramps that may come.",
    )
    hold_after_peak: Duration | None = Field(
        None,
        description="How long the forecast keeps holding a past day's peak once its clock time has passed"
        " the newest known load today (a ramp late today is still covered); shorter lets go sooner."
        " none: the whole slack on that side too.",
    )
    miss_rate: float | None = Field(
        None,
        gt=0,
        lt=0.5,
        description="Calibrate the forecast from its own measured error so that about this share of"
        " forecasts fall short of the load that came (e.g. 0.1); none: the quantile alone decides.",
    )


class WarmPool(Spec):
    """Pre-cloned, stopped instances so that a scale-out is a start, not a clone plus a boot."""

    size: int = Field(0, ge=0, description="How many instances to keep ready in the pool.")
    state: Literal["shutoff", "paused"] = Field("shutoff", description="How pooled instances wait.")
    boot_once: bool = Field(
        False,
        description="shutoff pools: boot each clone until ready, then shut it down, so first-boot work "
        "(cloud-init, host keys) is done before a scale-out starts it.",
    )


class Instance(Spec):
    """Each clone's own identity through cloud-init NoCloud: a seed disk and an SMBIOS serial.

    `user_data` and `network_config` name files (relative to the policy file); they are read and
    checked when the policy loads, and their text is kept with it. Templates may use ${name},
    ${hostname}, ${instance_id}, ${group} and ${host}; write $${ for a literal ${.
    """

    hostname: str = Field(
        "${name}", description="Hostname pattern, e.g. 'web-${instance_id}'; default the domain name."
    )
    user_data: str | None = Field(
        None, description="User-data file, templated; a '#cloud-config' file must be a YAML mapping."
    )
    network_config: str | None = Field(
        None, description="Network-config file (version 2, matched by MAC), templated; default DHCP."
    )
    ssh_authorized_keys: tuple[str, ...] = Field(
        (), description="Public keys for the default user (meta-data public-keys)."
    )
    user_data_text: SkipJsonSchema[str | None] = Field(
        None, description="The user_data file's text, read when the policy loads (never written)."
    )
    network_config_text: SkipJsonSchema[str | None] = Field(
        None, description="The network_config file's text, read when the policy loads (never written)."
    )

    @model_validator(mode="after")
    def _texts_come_from_files(self, info: ValidationInfo) -> Instance:
        written = (self.user_data_text is not None) or (self.network_config_text is not None)
        if written and (info.context or {}).get("from_file"):
            raise ValueError(
                "user_data_text and network_config_text are read from the files; do not set them"
            )
        return self


class Discovery(Spec):
    """How Prometheus finds the group's members (GET /v1/targets, or the file_sd file)."""

    ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = Field(
        (), description="Ports of the guests' Prometheus exporters; one target per member and port."
    )


class GroupPolicy(Spec):
    """One group of instances cloned from one golden image, and how to size it."""

    group: str = Field(
        pattern=GROUP_NAME, description="Group name: lowercase letters, digits and '-', at most 40."
    )
    golden: str = Field(description="The golden qcow2 image the clones are linked to (path or volume name).")
    template: str = Field(description="Shut-off template domain name, or path to a domain XML file.")
    pool: str = Field("default", description="libvirt storage pool that holds the clones' overlays.")
    min: int = Field(ge=0, description="Never fewer instances.")
    max: int = Field(ge=0, description="Never more instances.")
    evaluation_interval: PositiveDuration = Field(30.0, description="How often the group is evaluated.")
    checks: tuple[Check, ...] = Field((), description="Metric checks; several combine 'safest wins'.")
    warmup: Duration = Field(
        60.0, description="A new instance counts as capacity only after this long (and its probe)."
    )
    min_lifetime: Duration = Field(
        0.0, description="Instances younger than this are not removed by scale-in."
    )
    scale_up: Direction = Field(default_factory=_default_up, description="Behaviour when growing.")
    scale_down: Direction = Field(default_factory=_default_down, description="Behaviour when shrinking.")
    churn_budget: ChurnBudget | None = Field(
        None, description="Cap on creates plus removals per period, against flapping; none means no cap."
    )
    schedules: tuple[Schedule, ...] = Field((), description="Calendar floors and ceilings.")
    scale_in_order: Literal["newest", "oldest", "least_loaded"] = Field(
        "newest", description="Which instances go first on scale-in (not-ready ones always go first)."
    )
    readiness: Readiness = Field(default_factory=Readiness, description="Readiness and health probing.")
    predictive: Predictive = Field(default_factory=Predictive, description="Forecast-driven scale-out.")
    warm_pool: WarmPool = Field(default_factory=WarmPool, description="Pre-cloned stopped instances.")
    serving: serving_spec.Serving | None = Field(
        None,
        description="Load-balancer registration, draining and lifecycle hooks; none: members serve at once.",
    )
    instance: Instance | None = Field(
        None, description="Per-clone identity (cloud-init seed, SMBIOS serial); none keeps clones anonymous."
    )
    discovery: Discovery = Field(
        default_factory=Discovery, description="Service discovery of members for Prometheus."
    )
    dry_run: bool = Field(False, description="Decide and explain, but never act.")
    paused: bool = Field(False, description="Hold the group as it is; decisions are still recorded.")


class PolicyFile(Spec):
    """A file with several groups."""

    groups: tuple[GroupPolicy, ...] = Field(min_length=1, description="The groups this file defines.")
