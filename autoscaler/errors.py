"""One exception tree, typed by what the engine does next rather than by where the error came from.

AutoscalerError
├── PolicyError            reject the file, keep the last good version, raise a gauge
├── CoordinationUnavailable  etcd unreachable or without quorum: nobody acts, evaluation goes on
├── SourceError            the check's input becomes Failed(error_class)
│   ├── SourceUnavailable  temporary: connect error, timeout, HTTP 5xx/429; back off
│   └── QueryError         permanent until the policy changes: HTTP 400, several series
└── TargetError
    ├── TargetTemporary    BACKOFF; reconnect and reconcile when the connection broke
    │   ├── Fenced         not provably the leader: the mutating call was never sent
    │   └── LedgerUnavailable  the shared volume ledger (etcd) did not answer: no volume created or deleted
    ├── TargetPermanent    DISABLED plus an alert metric (bad golden image, bad XML)
    ├── Conflict           name or volume taken: look up by UUID, adopt if ours
    ├── UpkeepFailed       background work died: exit non-zero, systemd restarts, reconcile
    ├── CapacityLimited    the host lacks headroom: clip, record, not an error state
    └── BalancerError      a load balancer did not do what was asked
        ├── BalancerUnreachable  temporary: no answer; nothing counts, nothing is destroyed
        ├── BalancerRefused      temporary: an answer that is not the expected one; retried
        └── BalancerMisconfigured permanent: the backend is missing or cannot take our servers
"""

from __future__ import annotations


class AutoscalerError(Exception):
    """Root of every error this package raises on purpose."""


class PolicyError(AutoscalerError):
    """A policy file (or settings file) is invalid; carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SourceError(AutoscalerError):
    """A metric source could not answer; `error_class` is a bounded label value."""

    error_class = "source"


class SourceUnavailable(SourceError):
    """Temporary: the source did not answer (connection, timeout, 5xx, 429)."""

    error_class = "unavailable"


class QueryError(SourceError):
    """Permanent until the query changes: rejected query or an ambiguous result."""

    error_class = "query"


class TargetError(AutoscalerError):
    """The hypervisor side failed an operation."""

    error_class = "target"


class TargetTemporary(TargetError):
    """Retry later: broken connection, lock timeout, busy storage pool."""

    error_class = "temporary"


class TargetPermanent(TargetError):
    """Will not succeed without an operator: missing golden image, invalid XML."""

    error_class = "permanent"


class Conflict(TargetError):
    """A name or volume is already taken."""

    error_class = "conflict"


class UpkeepFailed(TargetError):
    """A target's background work died (a bug): the daemon exits so that it is restarted."""

    error_class = "upkeep"


class CapacityLimited(TargetError):
    """The host lacks the free memory (plus reserve) for another instance."""

    error_class = "capacity"


class BalancerError(TargetError):
    """A load balancer did not confirm an operation; what happens next depends on the subclass."""

    error_class = "lb"


class BalancerUnreachable(BalancerError, TargetTemporary):
    """No answer (connect error, timeout): a new member never counts, a draining one is kept."""

    error_class = "lb_unreachable"


class BalancerRefused(BalancerError, TargetTemporary):
    """The balancer answered something other than success; retried with back-off."""

    error_class = "lb_refused"


class BalancerMisconfigured(BalancerError, TargetPermanent):
    """The backend is missing or cannot take our servers: an operator must fix the config."""

    error_class = "lb_misconfigured"


class Fenced(TargetTemporary):
    """A mutating hypervisor call was refused: this daemon could not prove it still leads."""

    error_class = "fenced"


class CoordinationUnavailable(AutoscalerError):
    """etcd could not be reached or has no quorum; no daemon may act until it answers again."""


class LedgerUnavailable(CoordinationUnavailable, TargetTemporary):
    """The volume ledger in etcd did not answer: no volume is created, and none is proven ours.

    Both an etcd problem and a temporary target error, so the target backs off and retries as for
    any other temporary failure, and nothing is deleted meanwhile.
    """

    error_class = "ledger_unavailable"
