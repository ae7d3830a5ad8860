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

This module keeps the handler and its tick; the states and their transitions are in `engine.states`,
carrying a decision out in `engine.acting`, and what /status and the metrics show in `engine.status`.
"""

from __future__ import annotations

import asyncio
import collections
import typing
import weakref
from collections.abc import Callable

import structlog

from autoscaler import decide, errors, model, targets
from autoscaler.engine import health, history, inputs, journal, memory, predict, status
from autoscaler.engine.acting import CHANGED, Actor
from autoscaler.engine.deps import Alone, Deps, HandlerSettings, Leadership
from autoscaler.engine.states import HELD_STATES, Lifecycle, State, cooldown_end
from autoscaler.policy import files, spec

__all__ = [
    "CHANGED",
    "HELD_STATES",
    "Alone",
    "Deps",
    "GroupHandler",
    "HandlerSettings",
    "Leadership",
    "Reconciling",
    "State",
]

log = structlog.get_logger("autoscaler.engine")


@typing.runtime_checkable
class Reconciling(typing.Protocol):
    """A target whose inventory is only trustworthy once reconciled (KvmTarget is one)."""

    def ready_for(self, group: str) -> bool:
        """Whether `inventory(group)` reflects the hypervisor (reconciled since the last connect)."""
        ...


_T = typing.TypeVar("_T")


def _weakly(method: Callable[[], _T]) -> Callable[[], _T | None]:
    """`method`, called while its object lives. The handler's parts call back into it; held
    weakly, a dropped handler is freed at once by reference counting instead of waiting, frozen,
    for a full collection (`runtime.release`)."""
    held = weakref.WeakMethod(method)

    def call() -> _T | None:
        alive = held()
        return alive() if alive is not None else None

    return call


class GroupHandler:
    """Evaluates one group when poked and carries out what the state allows."""

    def __init__(self, loaded: files.LoadedGroup, deps: Deps) -> None:
        self.loaded = loaded
        self.deps = deps
        self.lifecycle = Lifecycle(_weakly(self._publish), deps.clock)
        self.paused: str | None = None
        """The operator's pause reason, None when not paused by an operator."""
        self.paused_at: float | None = None
        """When the operator paused the group here (a shared pause carries its own time)."""
        self.memory = model.GroupMemory()
        self.ticks = 0
        self.inventory: model.GroupInventory | None = None
        self.forecaster = predict.Forecaster(deps.settings.history_refresh, deps.settings.query_timeout)
        self.history = history.History()
        self._windows = status.Windows()
        """The last hours of sizes, load, capacity and forecast, for the console's charts."""
        self._edges = status.FailureEdges()
        self._source_edges = status.SourceEdges()
        self._said = status.DecisionLog()
        self._actor = Actor(deps, self.lifecycle, self._edges, _weakly(self._blocked))
        self._pending: files.LoadedGroup | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._loaded_state = False
        self._term = 0
        self._unread = False
        """The store could not be read: this handler decides but does not act until it can."""
        self._pause_unread = False
        """The shared pause could not be read: no action until it can (it may hold the group)."""
        self._pause_revision = 0
        """The revision of the shared pause last followed or written by this daemon."""
        self._saved = True
        """Whether the last write of the memory succeeded."""

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
    def state(self) -> State:
        """Where the handler is in the state machine (see `shown_state` for the exported one)."""
        return self.lifecycle.state

    @property
    def until(self) -> float | None:
        """End of the current COOLDOWN or BACKOFF (Unix seconds)."""
        return self.lifecycle.until

    @property
    def reason(self) -> str:
        """Why the handler is DISABLED or in BACKOFF."""
        return self.lifecycle.reason

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
        return self._actor.acting

    @property
    def replacements(self) -> collections.deque[health.Replacement]:
        """The most recent replacements of broken members."""
        return self._actor.replacements

    def poke(self) -> None:
        """Ask for an evaluation soon (the ticker calls this; it never blocks)."""
        self._wake.set()

    def update(self, loaded: files.LoadedGroup) -> None:
        """Take a new policy version at the next tick; a new version also leaves DISABLED.

        The version in force again (an edit reverted before the next tick) cancels the pending one.
        """
        self._pending = None if loaded.revision == self.loaded.revision else loaded

    def pause(self, reason: str) -> None:
        """Operator pause: keep deciding and journaling, stop acting (an in-flight action finishes)."""
        self.paused = reason or "paused by operator"
        self.paused_at = self.deps.clock.now()
        log.info("group_paused", group=self.group, reason=self.paused)

    def resume(self) -> None:
        """Operator resume: leave PAUSED, and DISABLED too."""
        self.paused = None
        self.paused_at = None
        if self.state is State.DISABLED:
            self.lifecycle.enter(State.IDLE)
        log.info("group_resumed", group=self.group)

    @property
    def stopping(self) -> bool:
        """True once shutdown began or the group was dropped: no new tick, no new action."""
        return self._stopping

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
        """Read the persisted memory and pause before the first tick, and again on each new
        leadership term (the previous leader's memory replaces what this daemon saw as standby)."""
        term = self.deps.leadership.term()
        if self._loaded_state and term == self._term and not self._unread:
            return
        try:
            saved = await self.deps.store.load(self.group)
        except OSError as exc:  # no action until it is read: a cooldown or pause may be in it
            self._unread = True
            self._edges.mark("state_read", True, error=str(exc), path=str(self.deps.store.path(self.group)))
            return
        self._unread = False
        self._edges.mark("state_read", False)
        self._loaded_state = True
        self._term = term
        if saved is not None:
            self.memory = saved.memory
            if self.deps.pauses is None:  # shared pauses are followed from the board instead
                self.paused, self.paused_at = saved.paused, saved.paused_at

    async def follow_pause(self) -> None:
        """Take the operator pause or resume another daemon stored (coordinated daemons only).

        A resume stored by another daemon also leaves DISABLED, as it does where it was sent.
        """
        board = self.deps.pauses
        if board is None:
            return
        try:
            shared = await board.read(self.group)
        except OSError as exc:
            self._pause_unread = True
            self._edges.mark("pause_read", True, error=str(exc))
            return
        self._pause_unread = False
        self._edges.mark("pause_read", False)
        if shared.revision == self._pause_revision:
            return
        self._pause_revision = shared.revision
        if shared.reason is not None and shared.reason != self.paused:
            self.pause(shared.reason)
        elif shared.reason is None and (self.paused is not None or self.state is State.DISABLED):
            self.resume()

    async def share_pause(self) -> str | None:
        """Store this daemon's operator pause (or resume) for every daemon; why not, or None.

        Without coordination there is nothing to share: the memory file keeps the pause.
        """
        board = self.deps.pauses
        if board is None:
            return None
        try:
            self._pause_revision = await board.write(self.group, self.paused)
        except OSError as exc:
            log.warning("pause_not_shared", group=self.group, paused=self.paused, error=str(exc))
            return str(exc)
        return None

    async def tick(self) -> journal.Entry | None:
        """One evaluation: inventory, metrics, decide, journal, act, persist."""
        await self.restore()
        await self.follow_pause()
        self._take_pending()
        self.ticks += 1
        started = self.deps.clock.monotonic()
        with structlog.contextvars.bound_contextvars(group=self.group, tick_id=self.ticks):
            entry = await self._tick(self.deps.clock.now())
        result = "skipped" if entry is None else ("ok" if self._saved else "error")
        self.deps.metrics.evaluated(self.group, result, self.deps.clock.monotonic() - started)
        return entry

    async def _tick(self, now: float) -> journal.Entry | None:
        if self.state is State.DISABLED:
            return None
        inventory = await self._inventory()
        if inventory is None:
            return None
        self.inventory = inventory
        self.lifecycle.expire(now, lambda: cooldown_end(self.policy, self.memory, inventory))
        policy = self.policy
        found = await inputs.gather(
            policy, self.deps.sources, now, self.deps.settings.query_timeout, self.deps.metrics
        )
        self._source_edges.update(policy, found)
        floor = await self.forecaster.floor(
            policy, self.deps.sources, now, self.deps.metrics, self._measured_lead(policy)
        )
        decision, self.memory = decide.evaluate(policy, inventory, found, self.memory, now, forecast=floor)
        blocked = self._blocked()
        outcome = await self._actor.carry_out(policy, decision, inventory, self.memory, blocked)
        self.memory = outcome.memory
        if outcome.label in CHANGED:
            self.inventory = await self._inventory() or inventory
        return await self._record(decision, outcome.label, outcome.detail)

    def _measured_lead(self, policy: spec.GroupPolicy) -> float | None:
        """The group's clone-to-ready p90 when the target measures it (the forecast's lead)."""
        target = self.deps.target
        if isinstance(target, targets.ProvisionTimes):
            return target.provision_seconds(policy.group)
        return None

    def _blocked(self) -> str | None:
        if self._stopping:
            return "stopping"
        if self._unread:
            return "memory_unread"
        held = self.deps.leadership.hold()
        if held is not None:
            return held
        if self._pause_unread:  # etcd answers the leader but not this read: a pause may be in it
            return "memory_unread"
        return self.lifecycle.blocked(False, self.paused)

    def _take_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self.loaded = pending
        log.info("policy_applied", group=self.group, revision=pending.revision)
        if self.state is State.DISABLED:
            self.lifecycle.enter(State.IDLE)

    async def _inventory(self) -> model.GroupInventory | None:
        target = self.deps.target
        try:
            if isinstance(target, Reconciling) and not target.ready_for(self.group):
                raise errors.TargetTemporary("the target has not reconciled since it (re)connected")
            inventory = await target.inventory(self.group)
        except errors.TargetError as exc:
            self._edges.mark("inventory_not_ready", True, error=str(exc))
            self._publish()
            return None
        self._edges.mark("inventory_not_ready", False)
        return inventory

    # --- recording and status -------------------------------------------------------------------

    async def _record(self, decision: model.Decision, outcome: str, detail: str) -> journal.Entry:
        entry = journal.Entry(self.ticks, decision, self.shown_state.value, outcome, detail)
        self.deps.journal.append(entry)
        self.history.record(
            decision,
            self.inventory or model.GroupInventory(self.group),
            self.policy,
            self._forecast(decision.at),
        )
        self.deps.metrics.decided(decision)
        self._said.say(decision, outcome, entry.state)
        self._publish(decision.desired)
        await self.persist()
        return entry

    def _forecast(self, at: float) -> tuple[float, float] | None:
        """(instant it is for, load) of the forecast made at `at`, when the group forecasts."""
        load = self.forecaster.last_load
        if self.policy.predictive.mode == "off" or load is None:
            return None
        return at + predict.lead_time(self.policy), load

    async def persist(self) -> bool:
        """Write the memory and operator pause to the state directory; False when that failed.

        A failed write (a full disk, a file where the state directory should be) is logged when it
        begins and ends, and the ticks it happens in count as evaluation errors; the group goes on
        deciding and acting, and the next tick writes again.
        """
        try:
            # Shielded: a drop or shutdown cancelling this task must not lose the record of an
            # action just taken (a restart would then act again with no cooldown).
            await asyncio.shield(
                self.deps.store.save(self.group, memory.Saved(self.memory, self.paused, self.paused_at))
            )
        except OSError as exc:
            path = str(self.deps.store.path(self.group))
            self._edges.mark("state_write", True, error=str(exc), path=path)
            self._saved = False
            return False
        self._edges.mark("state_write", False)
        self._saved = True
        return True

    def _publish(self, desired: int | None = None) -> None:
        inventory = self.inventory or model.GroupInventory(self.group)
        now = self.deps.clock.now()
        until = self.until
        remaining = max(0.0, until - now) if self.state is State.COOLDOWN and until else 0.0
        last = self.deps.journal.last(self.group)
        shown = self.shown_state.value
        self.deps.metrics.publish(
            self.group, status.snapshot(inventory, self.policy, last, shown, remaining, desired)
        )

    def status(self) -> dict[str, typing.Any]:
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
            "paused_at": self.paused_at if self.paused is not None else None,
            "min": self.policy.min,
            "max": self.policy.max,
            "current": inventory.current,
            "draining": len(inventory.instances) - inventory.current,
            "ready": inventory.ready,
            "members": status.members(inventory),
            "last_decision": last.to_dict() if last is not None else None,
            "replacements": status.replacements(self.replacements),
            "forecast": self.forecaster.last_load,
            "schedules": self._windows.shown(self.policy, self.deps.clock.now()),
        }
