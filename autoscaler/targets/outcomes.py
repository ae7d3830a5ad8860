"""How the gathered outcomes of parallel clones, takes and removals become one ScaleResult.

Scale-out and scale-in both run their per-domain jobs at once and report them the same way: what
was done, what failed and why, and the first error raised when nothing at all succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence

from autoscaler import errors, model
from autoscaler.targets import inventory as membership


def result(outcomes: Sequence[object], refused: int) -> model.ScaleResult:
    """A ScaleResult from gathered outcomes; raises the first error when nothing succeeded."""
    done = tuple(o.name if isinstance(o, membership.Record) else str(o) for o in outcomes if not is_error(o))
    failures = [o for o in outcomes if is_error(o)]
    if failures and not done and refused == 0:
        raise failures[0]  # type: ignore[misc]
    lines = tuple(f"{type(f).__name__}: {f}" for f in failures)
    lines += tuple("capacity: no host has room (memory plus reserve)" for _ in range(refused))
    return model.ScaleResult(done=done, failed=len(failures) + refused, errors=lines)


def is_error(outcome: object) -> bool:
    """True for an exception returned by gather; non-target errors (bugs) are re-raised."""
    if isinstance(outcome, BaseException) and not isinstance(outcome, errors.TargetError):
        raise outcome
    return isinstance(outcome, BaseException)
