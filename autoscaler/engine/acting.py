"""Turning one group's decision into an action: a scale-out, scale-in or replacement of broken
members run in a limiter slot, and the transition its ending calls for (COOLDOWN after success, also
partial; IDLE on a slot timeout or lack of capacity; BACKOFF on a temporary error; DISABLED on a
permanent one)."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from autoscaler import errors, model
from autoscaler.engine import health, limiter
from autoscaler.engine.deps import Deps
from autoscaler.engine.states import HELD_STATES, Lifecycle, Place, State
from autoscaler.engine.status import FailureEdges
from autoscaler.policy import spec

T = TypeVar("T")
log = structlog.get_logger("autoscaler.engine")

CHANGED = frozenset({"acted", "partial", "replaced"})
"""Outcomes after which the inventory is read again for /status and the metrics."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How carrying out a decision ended: the journal's outcome label and detail, and the memory."""

    label: str
    detail: str
    memory: model.GroupMemory
    """The group's memory, with the change recorded when members were added or removed."""


class Actor:
    """Carries out one group's decisions and moves its lifecycle by how they end."""

    def __init__(
        self, deps: Deps, lifecycle: Lifecycle, edges: FailureEdges, blocked: Callable[[], str | None]
    ) -> None:
        self.deps = deps
        self.lifecycle = lifecycle
        self.edges = edges
        self.blocked = blocked
        """Why no action may start now (shutdown, operator pause), asked again once a slot is free."""
        self.acting = False
        """True while a scale action is waiting for a slot or running."""
        self.replacements: collections.deque[health.Replacement] = collections.deque(maxlen=20)

    async def carry_out(
        self,
        policy: spec.GroupPolicy,
        decision: model.Decision,
        inventory: model.GroupInventory,
        mem: model.GroupMemory,
        blocked: str | None,
    ) -> Outcome:
        """Scale to `decision.desired`, or replace broken members when the size is right.

        `blocked` says why no action may start (see `Lifecycle.blocked`); a held decision only
        gets its outcome label.
        """
        if decision.desired == decision.current:
            return Outcome(*await self._heal(policy, inventory, blocked), mem)
        if not decision.act:
            return Outcome(("paused" if policy.paused else "dry_run"), "", mem)
        if blocked is not None:
            return Outcome(f"held_{blocked}", "", mem)
        return await self._scale(policy, decision, mem)

    async def _scale(
        self, policy: spec.GroupPolicy, decision: model.Decision, mem: model.GroupMemory
    ) -> Outcome:
        direction = decision.direction.value
        target = self.deps.target
        if decision.direction is model.Direction.UP:
            action = self._in_slot(
                policy, direction, lambda: target.scale_out(policy, decision.desired - decision.current)
            )
        else:
            action = self._in_slot(policy, direction, lambda: target.scale_in(policy, decision.victims))
        result = await action
        if isinstance(result, str):
            return Outcome(result, self.lifecycle.reason, mem)
        return self._settle(policy, decision.direction, result, mem)

    async def _in_slot(
        self, policy: spec.GroupPolicy, direction: str, call: Callable[[], Awaitable[T]]
    ) -> T | str:
        """Run `call` in a limiter slot; the outcome label instead of the result when held or failed."""
        self.acting = True
        self.lifecycle.enter(State.WAITING_SLOT)
        try:
            async with self.deps.limiter.slot():
                if (blocked := self.blocked()) is not None:
                    self.lifecycle.enter(State.IDLE)
                    return f"held_{blocked}"
                self.lifecycle.enter(State.SCALING)
                return await call()
        except limiter.SlotTimeout as exc:
            self.lifecycle.enter(State.IDLE, reason=str(exc))
            return "slot_timeout"
        except errors.TargetError as exc:
            return self._failed(policy.group, direction, exc)
        except Exception as exc:
            self._crashed(policy.group, direction, exc)
            raise
        finally:
            self.acting = False

    def _failed(self, group: str, direction: str, exc: errors.TargetError) -> str:
        self.deps.metrics.scaled(group, direction, None, exc.error_class)
        self.edges.mark(f"scale_{exc.error_class}", True, error=str(exc), direction=direction)
        if isinstance(exc, errors.CapacityLimited):
            self.lifecycle.enter(State.IDLE, reason=str(exc))
            return "capacity_limited"
        if isinstance(exc, errors.TargetPermanent):
            self.lifecycle.enter(State.DISABLED, reason=str(exc))
            return "disabled"
        self.lifecycle.back_off(str(exc), self.deps.settings)
        return "backoff"

    def _crashed(self, group: str, direction: str, exc: Exception) -> None:
        """A bug in the action: BACKOFF, so a restarted handler does not act again at once.

        What the action did is unknown; the supervisor logs the traceback and restarts the handler.
        """
        self.deps.metrics.scaled(group, direction, None, "bug")
        self.lifecycle.back_off(f"bug: {type(exc).__name__}: {exc}", self.deps.settings)

    def _settle(
        self,
        policy: spec.GroupPolicy,
        direction: model.Direction,
        result: model.ScaleResult,
        mem: model.GroupMemory,
    ) -> Outcome:
        self.deps.metrics.scaled(policy.group, direction.value, result)
        detail = "; ".join(result.errors)
        sign = 1 if direction is model.Direction.UP else -1
        now = self.deps.clock.now()
        if result.done:
            mem = mem.record_change(now, sign * len(result.done))
            if not result.failed:
                self.lifecycle.failures = 0
            self.edges.mark(f"scale_{direction.value}_failed", bool(result.failed), error=detail)
            self.lifecycle.cool_down(policy, direction)
            return Outcome(("partial" if result.failed else "acted"), detail, mem)
        if result.failed:
            self.edges.mark(f"scale_{direction.value}_failed", True, error=detail)
            self.lifecycle.back_off(detail, self.deps.settings)
            return Outcome("failed", detail, mem)
        self.lifecycle.enter(State.IDLE)
        return Outcome("noop", detail, mem)

    async def _heal(
        self, policy: spec.GroupPolicy, inventory: model.GroupInventory, blocked: str | None
    ) -> tuple[str, str]:
        victims = health.choose(inventory)
        if not victims or policy.dry_run or policy.paused or blocked not in (None, "cooldown"):
            return "none", ""
        held = self.lifecycle.place
        now = self.deps.clock.now()
        target = self.deps.target
        result = await self._in_slot(policy, "replace", lambda: health.replace(target, policy, victims, now))
        failure = self.lifecycle.reason
        self._resume_hold(held)
        if isinstance(result, str):
            return result, failure
        self.replacements.append(result)
        for _ in result.removed:
            self.deps.metrics.replaced(policy.group, "failed")
        log.info("members_replaced", broken=result.broken, created=result.created, removed=result.removed)
        return "replaced", ", ".join(
            f"{b} -> {c}" for b, c in zip(result.removed, result.created, strict=False)
        )

    def _resume_hold(self, held: Place) -> None:
        """After a replacement, go back to the COOLDOWN it ran in, with its end and reason.

        A replacement never shortens a hold: a slot timeout (IDLE) or a short BACKOFF would end the
        cooldown early. Only DISABLED, or a BACKOFF that ends later, wins over the earlier hold.
        """
        lifecycle = self.lifecycle
        if held.state not in HELD_STATES or lifecycle.state is State.DISABLED:
            if lifecycle.state is State.SCALING:
                lifecycle.enter(State.IDLE)
            return
        if lifecycle.state in HELD_STATES and (lifecycle.deadline or 0.0) >= (held.deadline or 0.0):
            return
        lifecycle.restore(held)
