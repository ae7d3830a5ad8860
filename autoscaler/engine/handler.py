"""One group's tick and its state machine: the only place where decisions turn into actions.

```
 STARTING ──inventory reconciled──► IDLE ──desired≠current──► WAITING_SLOT ──slot──► SCALING
                                    ▲  ▲                           │ slot timeout       │
                                    │  └───────────────────────────┘                    │
                                    │                       success ─► COOLDOWN(dir) ◄──┤
                                    ├──────── cooldown expired ◄───────┘                │
                                    ├──────── no-op (already matching) ◄────────────────┤
                                    └──── BACKOFF(until) ◄──── temporary error ─────────┤
                                          DISABLED(reason) ◄── permanent error ─────────┘
 PAUSED: entered and left from any state by the operator; an in-flight SCALING finishes first.
```

Evaluation runs in every state but STARTING and DISABLED; in COOLDOWN, BACKOFF and PAUSED the
decision is journaled but not carried out. A restart starts in COOLDOWN when the persisted memory
or the members' creation times show a change newer than the cooldown. Partial success enters
COOLDOWN for what succeeded; a new policy version never interrupts SCALING (it applies at the next
tick) and is, with an operator resume, the way out of DISABLED. A broken (FAILED) member is
replaced, new clone first, at most 10 % of the group at a time (`engine.health`).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from autoscaler import decide, errors, model, sources, targets
from autoscaler.engine import Clock, health, inputs, journal, limiter, memory, predict
from autoscaler.policy import files, spec
from autoscaler.telemetry import metrics as telemetry

T = TypeVar("T")
log = structlog.get_logger("autoscaler.engine")


class State(enum.StrEnum):
    """Where a group's handler is; exported as `autoscaler_group_state{state}`."""

    STARTING = "starting"
    IDLE = "idle"
    WAITING_SLOT = "waiting_slot"
    SCALING = "scaling"
    COOLDOWN = "cooldown"
    BACKOFF = "backoff"
    DISABLED = "disabled"
    PAUSED = "paused"


@typing.runtime_checkable
class Reconciling(typing.Protocol):
    """A target whose inventory is only trustworthy once reconciled (KvmTarget is one)."""

    def ready_for(self, group: str) -> bool:
        """Whether `inventory(group)` reflects the hypervisor (reconciled since the last connect)."""
        ...


CHANGED = frozenset({"acted", "partial", "replaced"})
"""Outcomes after which the inventory is read again for /status and the metrics."""
HELD_STATES = frozenset({State.COOLDOWN, State.BACKOFF})


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    """Engine tunables shared by every handler."""

    query_timeout: float = 10.0
    """Seconds one metric query may take before its check counts as failed."""
    backoff_initial: float = 10.0
    """First BACKOFF after a temporary target error; doubles with each further failure."""
    backoff_max: float = 300.0
    """Longest BACKOFF."""
    history_refresh: float = 300.0
    """How often predictive groups re-read their range-query history."""


@dataclass(frozen=True, slots=True)
class Deps:
    """What every handler shares: the world it acts on and the places it reports to."""

    target: targets.Target
    sources: Mapping[str, sources.MetricSource]
    clock: Clock
    limiter: limiter.Limiter
    store: memory.MemoryStore
    journal: journal.Journal
    metrics: telemetry.Metrics
    settings: HandlerSettings = HandlerSettings()


class GroupHandler:
    """Evaluates one group when poked and carries out what the state allows."""

    def __init__(self, loaded: files.LoadedGroup, deps: Deps) -> None:
        self.loaded = loaded
        self.deps = deps
        self.state = State.STARTING
        self.until: float | None = None
        """End of the current COOLDOWN or BACKOFF (Unix seconds)."""
        self.reason = ""
        """Why the handler is DISABLED or in BACKOFF."""
        self.paused: str | None = None
        """The operator's pause reason, None when not paused by an operator."""
        self.memory = model.GroupMemory()
        self.ticks = 0
        self.inventory: model.GroupInventory | None = None
        self.replacements: collections.deque[health.Replacement] = collections.deque(maxlen=20)
        self.forecaster = predict.Forecaster(deps.settings.history_refresh, deps.settings.query_timeout)
        self._pending: files.LoadedGroup | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._acting = False
        self._failures = 0
        self._failing: set[str] = set()
        self._loaded_state = False
        self._last_said: tuple[str, int, int] | None = None
        """The last logged (outcome, current, desired): a held decision is logged once, not per tick."""

    # --- identity and control -------------------------------------------------------------------

    @property
    def group(self) -> str:
        """The group's name."""
        return self.loaded.policy.group

    @property
    def policy(self) -> spec.GroupPolicy:
        """The policy in force (a newer one waits for the next tick)."""
        return self.loaded.policy

    @property
    def latest(self) -> files.LoadedGroup:
        """The newest policy version, applied or waiting for the next tick."""
        return self._pending or self.loaded

    @property
    def shown_state(self) -> State:
        """The state as exported: PAUSED covers every state but an action in flight."""
        pausing = self.paused is not None or self.policy.paused
        if pausing and self.state not in (State.SCALING, State.WAITING_SLOT):
            return State.PAUSED
        return self.state

    @property
    def acting(self) -> bool:
        """True while a scale action is waiting for a slot or running."""
        return self._acting

    def poke(self) -> None:
        """Ask for an evaluation soon (the ticker calls this; it never blocks)."""
        self._wake.set()

    def update(self, loaded: files.LoadedGroup) -> None:
        """Take a new policy version at the next tick; a new version also leaves DISABLED."""
        if loaded.revision != self.loaded.revision:
            self._pending = loaded

    def pause(self, reason: str) -> None:
        """Operator pause: keep deciding and journaling, stop acting (an in-flight action finishes)."""
        self.paused = reason or "paused by operator"
        log.info("group_paused", group=self.group, reason=self.paused)

    def resume(self) -> None:
        """Operator resume: leave PAUSED, and DISABLED too."""
        self.paused = None
        if self.state is State.DISABLED:
            self._enter(State.IDLE)
        log.info("group_resumed", group=self.group)

    def stop_acting(self) -> None:
        """Shutdown: decide no more and start no new action; one in flight continues."""
        self._stopping = True
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Evaluate each time the handler is poked, until shutdown begins."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if not self._stopping:
                await self.tick()

    async def restore(self) -> None:
        """Read the persisted memory and pause once (before the first tick)."""
        if self._loaded_state:
            return
        saved = await self.deps.store.load(self.group)
        self._loaded_state = True
        if saved is not None:
            self.memory = saved.memory
            self.paused = saved.paused

    async def tick(self) -> journal.Entry | None:
        """One evaluation: inventory, metrics, decide, journal, act, persist."""
        await self.restore()
        self._take_pending()
        self.ticks += 1
        started = self.deps.clock.monotonic()
        with structlog.contextvars.bound_contextvars(group=self.group, tick_id=self.ticks):
            entry = await self._tick(self.deps.clock.now())
        result = "ok" if entry is not None else "skipped"
        self.deps.metrics.evaluated(self.group, result, self.deps.clock.monotonic() - started)
        return entry

    async def _tick(self, now: float) -> journal.Entry | None:
        if self.state is State.DISABLED:
            return None
        inventory = await self._inventory()
        if inventory is None:
            return None
        self.inventory = inventory
        self._expire(now, inventory)
        policy = self.policy
        found = await inputs.gather(
            policy, self.deps.sources, now, self.deps.settings.query_timeout, self.deps.metrics
        )
        floor = await self.forecaster.floor(policy, self.deps.sources, now, self.deps.metrics)
        decision, self.memory = decide.evaluate(policy, inventory, found, self.memory, now, forecast=floor)
        outcome, detail = await self._carry_out(policy, decision, inventory)
        if outcome in CHANGED:
            self.inventory = await self._inventory() or inventory
        return await self._record(decision, outcome, detail)

    # --- states ---------------------------------------------------------------------------------

    def _take_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self.loaded = pending
        log.info("policy_applied", group=self.group, revision=pending.revision)
        if self.state is State.DISABLED:
            self._enter(State.IDLE)

    def _enter(self, state: State, until: float | None = None, reason: str = "") -> None:
        self.state, self.until, self.reason = state, until, reason
        self._publish()

    def _expire(self, now: float, inventory: model.GroupInventory) -> None:
        if self.state is State.STARTING:
            end = self._cooldown_end(inventory)
            if end is not None and end > now:
                self._enter(State.COOLDOWN, end, "recent change before start")
            else:
                self._enter(State.IDLE)
        if self.state in HELD_STATES and self.until is not None and now >= self.until:
            self._enter(State.IDLE)

    def _cooldown_end(self, inventory: model.GroupInventory) -> float | None:
        policy, mem = self.policy, self.memory
        ends = [
            last + direction.cooldown
            for last, direction in ((mem.last_up_at, policy.scale_up), (mem.last_down_at, policy.scale_down))
            if last is not None
        ]
        newest = max((i.created_at for i in inventory.instances), default=None)
        if newest is not None:
            ends.append(newest + policy.scale_up.cooldown)
        return max(ends, default=None)

    def _blocked(self) -> str | None:
        if self._stopping:
            return "stopping"
        if self.paused is not None:
            return "paused"
        return self.state.value if self.state in HELD_STATES else None

    # --- inventory ------------------------------------------------------------------------------

    async def _inventory(self) -> model.GroupInventory | None:
        target = self.deps.target
        try:
            if isinstance(target, Reconciling) and not target.ready_for(self.group):
                raise errors.TargetTemporary("the target has not reconciled since it (re)connected")
            inventory = await target.inventory(self.group)
        except errors.TargetError as exc:
            self._edge("inventory_not_ready", True, error=str(exc))
            self._publish()
            return None
        self._edge("inventory_not_ready", False)
        return inventory

    # --- acting ---------------------------------------------------------------------------------

    async def _carry_out(
        self, policy: spec.GroupPolicy, decision: model.Decision, inventory: model.GroupInventory
    ) -> tuple[str, str]:
        if decision.desired == decision.current:
            return await self._heal(policy, inventory)
        if not decision.act:
            return ("paused" if policy.paused else "dry_run"), ""
        blocked = self._blocked()
        if blocked is not None:
            return f"held_{blocked}", ""
        return await self._scale(policy, decision)

    async def _scale(self, policy: spec.GroupPolicy, decision: model.Decision) -> tuple[str, str]:
        direction = decision.direction.value
        if decision.direction is model.Direction.UP:
            action = self._action(
                direction, lambda: self.deps.target.scale_out(policy, decision.desired - decision.current)
            )
        else:
            action = self._action(direction, lambda: self.deps.target.scale_in(policy, decision.victims))
        result = await action
        if isinstance(result, str):
            return result, self.reason
        return self._settle(policy, decision.direction, result)

    async def _action(self, direction: str, call: Callable[[], Awaitable[T]]) -> T | str:
        """Run `call` in a limiter slot; the outcome label instead of the result when it failed."""
        self._acting = True
        self._enter(State.WAITING_SLOT)
        try:
            async with self.deps.limiter.slot():
                self._enter(State.SCALING)
                return await call()
        except limiter.SlotTimeout as exc:
            self._enter(State.IDLE, reason=str(exc))
            return "slot_timeout"
        except errors.TargetError as exc:
            return self._failed(direction, exc)
        finally:
            self._acting = False

    def _failed(self, direction: str, exc: errors.TargetError) -> str:
        self.deps.metrics.scaled(self.group, direction, None, exc.error_class)
        self._edge(f"scale_{exc.error_class}", True, error=str(exc), direction=direction)
        if isinstance(exc, errors.CapacityLimited):
            self._enter(State.IDLE, reason=str(exc))
            return "capacity_limited"
        if isinstance(exc, errors.TargetPermanent):
            self._enter(State.DISABLED, reason=str(exc))
            return "disabled"
        self._back_off(str(exc))
        return "backoff"

    def _back_off(self, reason: str) -> None:
        self._failures += 1
        settings = self.deps.settings
        delay = min(settings.backoff_max, settings.backoff_initial * 2 ** (self._failures - 1))
        self._enter(State.BACKOFF, self.deps.clock.now() + delay, reason)

    def _settle(
        self, policy: spec.GroupPolicy, direction: model.Direction, result: model.ScaleResult
    ) -> tuple[str, str]:
        self.deps.metrics.scaled(self.group, direction.value, result)
        detail = "; ".join(result.errors)
        sign = 1 if direction is model.Direction.UP else -1
        now = self.deps.clock.now()
        if result.done:
            self.memory = self.memory.record_change(now, sign * len(result.done))
            self._failures = 0 if not result.failed else self._failures
            self._edge(f"scale_{direction.value}_failed", bool(result.failed), error=detail)
            self._cool_down(policy, direction, now)
            return ("partial" if result.failed else "acted"), detail
        if result.failed:
            self._edge(f"scale_{direction.value}_failed", True, error=detail)
            self._back_off(detail)
            return "failed", detail
        self._enter(State.IDLE)
        return "noop", detail

    def _cool_down(self, policy: spec.GroupPolicy, direction: model.Direction, now: float) -> None:
        wait = (policy.scale_up if direction is model.Direction.UP else policy.scale_down).cooldown
        if wait > 0:
            self._enter(State.COOLDOWN, now + wait, f"after scale {direction.value}")
        else:
            self._enter(State.IDLE)

    async def _heal(self, policy: spec.GroupPolicy, inventory: model.GroupInventory) -> tuple[str, str]:
        victims = health.choose(inventory)
        if not victims or policy.dry_run or policy.paused or self._blocked() not in (None, "cooldown"):
            return "none", ""
        held = self.state
        now = self.deps.clock.now()
        result = await self._action("replace", lambda: health.replace(self.deps.target, policy, victims, now))
        if isinstance(result, str):
            return result, self.reason
        self.replacements.append(result)
        for _ in result.removed:
            self.deps.metrics.replaced(self.group, "failed")
        log.info("members_replaced", broken=result.broken, created=result.created, removed=result.removed)
        if self.state is State.SCALING:
            self._enter(held if held in HELD_STATES else State.IDLE, self.until)
        return "replaced", ", ".join(
            f"{b} -> {c}" for b, c in zip(result.removed, result.created, strict=False)
        )

    # --- recording ------------------------------------------------------------------------------

    async def _record(self, decision: model.Decision, outcome: str, detail: str) -> journal.Entry:
        entry = journal.Entry(self.ticks, decision, self.shown_state.value, outcome, detail)
        self.deps.journal.append(entry)
        self.deps.metrics.decided(decision)
        said = (outcome, decision.current, decision.desired)
        if outcome != "none" and said != self._last_said:
            self._last_said = said
            log.info(
                "decision",
                current=decision.current,
                desired=decision.desired,
                outcome=outcome,
                reason=decision.reason,
                state=entry.state,
            )
        self._publish(decision.desired)
        await self.persist()
        return entry

    async def persist(self) -> None:
        """Write the memory and operator pause to the state directory."""
        await self.deps.store.save(self.group, memory.Saved(self.memory, self.paused))

    def _publish(self, desired: int | None = None) -> None:
        inventory = self.inventory or model.GroupInventory(self.group)
        last = self.deps.journal.last(self.group)
        if desired is None:
            desired = last.decision.desired if last is not None else inventory.current
        now = self.deps.clock.now()
        remaining = max(0.0, self.until - now) if self.state is State.COOLDOWN and self.until else 0.0
        snapshot = telemetry.GroupSnapshot.of(
            inventory,
            desired=desired,
            low=self.policy.min,
            high=self.policy.max,
            state=self.shown_state.value,
            cooldown_remaining=remaining,
            last_evaluation=last.decision.at if last is not None else None,
        )
        self.deps.metrics.publish(self.group, snapshot)

    def _edge(self, kind: str, failing: bool, **fields: Any) -> None:
        """Log once when a failure kind begins and once when it ends (counters carry the repeats)."""
        if failing and kind not in self._failing:
            self._failing.add(kind)
            log.warning("failure_began", kind=kind, **fields)
        elif not failing and kind in self._failing:
            self._failing.discard(kind)
            log.info("failure_recovered", kind=kind)

    # --- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The group as /status shows it."""
        inventory = self.inventory or model.GroupInventory(self.group)
        last = self.deps.journal.last(self.group)
        return {
            "group": self.group,
            "file": self.loaded.file,
            "revision": self.loaded.revision,
            "state": self.shown_state.value,
            "until": self.until,
            "reason": self.reason,
            "paused": self.paused,
            "min": self.policy.min,
            "max": self.policy.max,
            "current": inventory.current,
            "ready": inventory.ready,
            "members": [_member(i) for i in inventory.instances],
            "last_decision": last.to_dict() if last is not None else None,
            "replacements": [_replacement(r) for r in self.replacements],
            "forecast": self.forecaster.last_load,
        }


def _member(instance: model.Instance) -> dict[str, Any]:
    return {
        "name": instance.name,
        "state": instance.state.value,
        "created_at": instance.created_at,
        "ready_at": instance.ready_at,
        "host": instance.host,
    }


def _replacement(replacement: health.Replacement) -> dict[str, Any]:
    return {
        "at": replacement.at,
        "broken": list(replacement.broken),
        "created": list(replacement.created),
        "removed": list(replacement.removed),
        "errors": list(replacement.errors),
    }
