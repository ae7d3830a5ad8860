"""The `serving` block of a group policy: which load balancers a member joins, and its lifecycle hooks.

A member counts as capacity only once every balancer named here confirmed it, and it leaves every
one of them (drained) before its domain is destroyed. Kept apart from `spec` so the serving rules
read in one place.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from autoscaler.policy.durations import PositiveDuration

SHORT_EXAMPLES = ["500ms", "2s", "10s"]
"""Schema examples for the fields counted in seconds (checks, answers, retries)."""

SERVER_PREFIX = r"^[A-Za-z0-9_.-]{1,40}$"
LOOPBACK_TCP = re.compile(r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]):(\d{1,5})$")


class _Spec(BaseModel):
    """Immutable, unknown keys are errors (as every policy model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _admin_socket(value: str) -> str:
    """A UNIX socket path, or a loopback host:port (the runtime API has no authentication)."""
    if value.startswith("/"):
        return value
    if LOOPBACK_TCP.match(value):
        return value
    raise ValueError(
        f"expected an absolute UNIX socket path or a loopback address such as 127.0.0.1:9999, got {value!r}"
        " (the HAProxy runtime API has no authentication: never expose it beyond this host)"
    )


AdminSocket = Annotated[str, AfterValidator(_admin_socket)]


class HealthCheck(_Spec):
    """The HAProxy health check given to each member's server (`check inter rise fall`)."""

    inter: PositiveDuration = Field(2.0, description="Interval between two checks.", examples=SHORT_EXAMPLES)
    rise: int = Field(2, ge=1, le=100, description="Consecutive passed checks before a server is UP.")
    fall: int = Field(3, ge=1, le=100, description="Consecutive failed checks before a server is DOWN.")


class Haproxy(_Spec):
    """One HAProxy backend reached through its runtime API (admin level)."""

    kind: Literal["haproxy"] = Field(description="The built-in HAProxy runtime-API driver.")
    socket: AdminSocket = Field(
        description="Admin socket: a UNIX path (stats socket ... level admin) or a loopback host:port."
    )
    backend: str = Field(min_length=1, description="The backend the group's members join.")
    server_prefix: str = Field(
        "",
        pattern=r"^$|" + SERVER_PREFIX[1:],
        description="Servers named '<prefix>-<8 hex>' are ours; default 'as-<group>' (the domain names)."
        " In template mode: the server-template prefix (slots '<prefix>1'..'<prefix>N').",
    )
    mode: Literal["dynamic", "template"] = Field(
        "dynamic",
        description="dynamic: add and delete servers (needs a dynamic algorithm such as roundrobin);"
        " template: claim pre-declared server-template slots with 'set server addr'.",
    )
    check: HealthCheck = Field(default_factory=HealthCheck, description="Health check of each server.")
    command_timeout: PositiveDuration = Field(
        5.0, description="Longest wait for one runtime-API answer.", examples=SHORT_EXAMPLES
    )


Balancer = Annotated[Haproxy, Field(discriminator="kind")]


class Webhook(_Spec):
    """A JSON POST, signed with HMAC-SHA256 when a secret file is given."""

    url: str = Field(pattern=r"^https?://", description="Where the hook's JSON is posted.")
    secret_file: str = Field(
        "", description="File holding the HMAC-SHA256 key; the signature goes in X-Autoscaler-Signature."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")


class Hook(_Spec):
    """One lifecycle hook: a command or a webhook that may hold or abandon a launch or termination."""

    name: str = Field(pattern=r"^[a-z0-9_][a-z0-9_-]{0,62}$", description="Unique within the group.")
    event: Literal["launching", "terminating"] = Field(
        description="launching: after the readiness probe, before registration; terminating: after the"
        " drain, before the shutdown."
    )
    exec: tuple[str, ...] = Field(
        (),
        description="argv, run without a shell; JSON on stdin and AUTOSCALER_* in the environment;"
        " exit 0 continues, exit 1 abandons, anything else means default_result.",
    )
    webhook: Webhook | None = Field(
        None,
        description='POST the JSON; a 2xx reply {"result": "continue"|"abandon"} decides, a 202'
        ' {"heartbeat": seconds} asks to be asked again later (up to the timeout).',
    )
    timeout: PositiveDuration = Field(60.0, description="Give up after this long and apply default_result.")
    default_result: Literal["continue", "abandon"] | None = Field(
        None, description="On timeout or error; default abandon when launching, continue when terminating."
    )

    @model_validator(mode="after")
    def _one_action(self) -> Hook:
        if bool(self.exec) == (self.webhook is not None):
            raise ValueError("a hook needs exactly one of 'exec' (argv) or 'webhook'")
        if self.timeout > 7200:
            raise ValueError("timeout: at most 2h")
        return self

    @property
    def fallback(self) -> str:
        """The result applied on a timeout or an error."""
        if self.default_result is not None:
            return self.default_result
        return "abandon" if self.event == "launching" else "continue"


class Serving(_Spec):
    """Registration with load balancers, draining before removal, and lifecycle hooks."""

    port: int = Field(ge=1, le=65535, description="The members' service port, as the balancers reach it.")
    balancers: tuple[Balancer, ...] = Field(
        (), description="Every balancer a member must join before it counts as capacity."
    )
    hooks: tuple[Hook, ...] = Field((), description="Lifecycle hooks, run in order.")
    launch_timeout: PositiveDuration = Field(
        300.0,
        description="A member not confirmed by every balancer this long after its probe passed is"
        " destroyed and replaced (it never served).",
    )
    drain_timeout: PositiveDuration = Field(
        300.0,
        description="Longest wait for a draining member's sessions to end; it is never destroyed earlier"
        " unless every balancer reports it idle.",
    )
    retry_interval: PositiveDuration = Field(
        1.0,
        description="First pause before asking an unreachable balancer again (doubles, up to 30s).",
        examples=SHORT_EXAMPLES,
    )

    @model_validator(mode="after")
    def _unique(self) -> Serving:
        names = [h.name for h in self.hooks]
        if len(names) != len(set(names)):
            raise ValueError("hooks: names must be unique")
        keys = [(b.socket, b.backend) for b in self.balancers]
        if len(keys) != len(set(keys)):
            raise ValueError("balancers: the same socket and backend is named twice")
        for balancer in self.balancers:
            if self.drain_timeout < balancer.check.inter:
                raise ValueError("drain_timeout: shorter than a balancer's check interval")
            if self.launch_timeout < balancer.check.inter * balancer.check.rise:
                raise ValueError(
                    "launch_timeout: shorter than a balancer's check.inter x check.rise: no member"
                    " could ever be confirmed"
                )
        return self
