"""A group handler's states and the transitions between them, apart from the I/O that drives them.

The diagram lives in `engine.handler`; this module holds where a group is (state, until when, why),
how it leaves STARTING and the timed states, and how long it backs off or cools down.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from autoscaler import model
from autoscaler.engine import Clock
from autoscaler.engine.deps import HandlerSettings
from autoscaler.policy import spec


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


HELD_STATES = frozenset({State.COOLDOWN, State.BACKOFF})
"""States that last until a time and hold decisions back meanwhile."""


@dataclass(frozen=True, slots=True)
class Place:
    """Where a lifecycle is, to go back to later: its state, deadline and reason."""

    state: State
    deadline: float | None
    reason: str


class Lifecycle:
    """One group's place in the state machine; `on_change` runs after every transition.

    COOLDOWN and BACKOFF end at a deadline on the monotonic clock, so a wall-clock step (NTP) neither
    ends them early nor makes them last an hour; only the cooldown a restart derives from persisted
    (wall-clock) times is converted once, when it is entered.
    """

    def __init__(self, on_change: Callable[[], None], clock: Clock) -> None:
        self.state = State.STARTING
        self.deadline: float | None = None
        """End of the current COOLDOWN or BACKOFF (monotonic seconds)."""
        self.reason = ""
        """Why the handler is DISABLED or in BACKOFF."""
        self.failures = 0
        """Consecutive failed actions, which set the length of the next BACKOFF."""
        self._on_change = on_change
        self._clock = clock

    @property
    def until(self) -> float | None:
        """End of the current COOLDOWN or BACKOFF as Unix seconds (as the wall clock reads now)."""
        if self.deadline is None:
            return None
        return self._clock.now() + (self.deadline - self._clock.monotonic())

    @property
    def place(self) -> Place:
        """Where the lifecycle is now (see `restore`)."""
        return Place(self.state, self.deadline, self.reason)

    def enter(self, state: State, until: float | None = None, reason: str = "") -> None:
        """Move to `state` (until a Unix time, for a reason) and announce it."""
        left = None if until is None else until - self._clock.now()
        self._go(state, None if left is None else self._clock.monotonic() + left, reason)

    def restore(self, place: Place) -> None:
        """Go back to an earlier place, with its deadline, and announce it."""
        self._go(place.state, place.deadline, place.reason)

    def _go(self, state: State, deadline: float | None, reason: str) -> None:
        self.state, self.deadline, self.reason = state, deadline, reason
        self._on_change()

    def _hold(self, state: State, seconds: float, reason: str) -> None:
        self._go(state, self._clock.monotonic() + seconds, reason)

    def expire(self, now: float, cooldown_end: Callable[[], float | None]) -> None:
        """Leave STARTING (into COOLDOWN if a change is recent) and any timed state that is over."""
        if self.state is State.STARTING:
            end = cooldown_end()
            if end is not None and end > now:
                self.enter(State.COOLDOWN, end, "recent change before start")
            else:
                self.enter(State.IDLE)
        over = self.deadline is not None and self._clock.monotonic() >= self.deadline
        if self.state in HELD_STATES and over:
            self.enter(State.IDLE)

    def back_off(self, reason: str, settings: HandlerSettings) -> None:
        """Enter BACKOFF for twice as long as the last one, up to the maximum."""
        self.failures += 1
        delay = min(settings.backoff_max, settings.backoff_initial * 2 ** (self.failures - 1))
        self._hold(State.BACKOFF, delay, reason)

    def cool_down(self, policy: spec.GroupPolicy, direction: model.Direction) -> None:
        """Enter the direction's COOLDOWN after a change (IDLE when it has none)."""
        wait = (policy.scale_up if direction is model.Direction.UP else policy.scale_down).cooldown
        if wait > 0:
            self._hold(State.COOLDOWN, wait, f"after scale {direction.value}")
        else:
            self.enter(State.IDLE)

    def blocked(self, stopping: bool, paused: str | None) -> str | None:
        """Why no action may start now (shutdown, operator pause, a timed state), or None."""
        if stopping:
            return "stopping"
        if paused is not None:
            return "paused"
        return self.state.value if self.state in HELD_STATES else None


def cooldown_end(
    policy: spec.GroupPolicy, mem: model.GroupMemory, inventory: model.GroupInventory
) -> float | None:
    """When the cooldown of the newest known change (remembered or a member's creation) ends."""
    ends = [
        last + direction.cooldown
        for last, direction in ((mem.last_up_at, policy.scale_up), (mem.last_down_at, policy.scale_down))
        if last is not None
    ]
    newest = max((i.created_at for i in inventory.instances), default=None)
    if newest is not None:
        ends.append(newest + policy.scale_up.cooldown)
    return max(ends, default=None)
