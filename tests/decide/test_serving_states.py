"""Members registering with load balancers: pending toward the size, never capacity, first to go."""

from __future__ import annotations

import dataclasses

from autoscaler import decide, model
from tests.decide.builders import fleet, fresh, policy

NOW = 1_764_000_000.0


def with_registering(inventory: model.GroupInventory, count: int) -> model.GroupInventory:
    """The inventory with its last `count` ready members still registering."""
    members = list(inventory.instances)
    for index in range(len(members) - count, len(members)):
        members[index] = dataclasses.replace(members[index], state=model.InstanceState.REGISTERING)
    return dataclasses.replace(inventory, instances=tuple(members))


def test_registering_members_count_toward_the_size_but_not_as_capacity() -> None:
    inventory = with_registering(fleet(6), 2)
    assert (inventory.current, inventory.ready) == (6, 4)
    # 4 ready members at 100 % of a 50 % target want 8: the 2 registering ones are not a reason
    # for another 4 (no double scale-out), nor counted as serving (desired from ready only).
    decision, _ = decide.evaluate(policy(), inventory, {"cpu": fresh(1.0, NOW)}, model.GroupMemory(), NOW)
    assert decision.desired == 8


def test_registering_members_hold_a_scale_in_and_say_so() -> None:
    inventory = with_registering(fleet(6), 1)
    decision, _ = decide.evaluate(policy(), inventory, {"cpu": fresh(0.05, NOW)}, model.GroupMemory(), NOW)
    assert decision.desired == 6
    warmup = next(s for s in decision.trail if s.name == "warmup")
    assert "1 registering with the load balancers" in warmup.reason


def test_victims_prefer_members_not_yet_serving() -> None:
    inventory = with_registering(fleet(5, created_at=NOW - 3600), 0)
    members = list(inventory.instances)
    members[0] = dataclasses.replace(members[0], state=model.InstanceState.REGISTERING)
    inventory = dataclasses.replace(inventory, instances=tuple(members))
    victims = decide.victims.choose(policy(scale_in_order="newest"), inventory, 2, NOW)
    assert victims == ("web-0", "web-4")
