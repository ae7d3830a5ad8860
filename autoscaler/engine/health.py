"""Replacing broken members: a clone first, the broken one destroyed after, a few at a time.

A member the target reports FAILED (crashed, shut off unasked, failing its readiness probe after
warm-up) still counts toward the group's size, so the decision core will not add capacity for it.
Replacing it keeps the size while restoring capacity. New-before-old keeps the group from dipping,
and at most 10 % of the group (at least one) is replaced at a time so a bad golden image or a
host-wide fault cannot churn the whole group at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler import model, targets
from autoscaler.policy import spec

BATCH_FRACTION = 0.1
"""The largest share of a group replaced in one go."""


@dataclass(frozen=True, slots=True)
class Replacement:
    """One round of replacements: what was created, what was removed, what failed."""

    at: float
    broken: tuple[str, ...]
    """The members found broken and chosen for this round."""
    created: tuple[str, ...]
    removed: tuple[str, ...]
    errors: tuple[str, ...] = ()


def broken(inventory: model.GroupInventory) -> list[model.Instance]:
    """Members the target reports FAILED, oldest first."""
    failed = [i for i in inventory.members if i.state is model.InstanceState.FAILED]
    return sorted(failed, key=lambda i: i.created_at)


def batch_size(current: int, fraction: float = BATCH_FRACTION) -> int:
    """How many members may be replaced at once: `fraction` of the group, at least one."""
    return max(1, math.floor(current * fraction))


def choose(inventory: model.GroupInventory, fraction: float = BATCH_FRACTION) -> list[model.Instance]:
    """The broken members to replace in this round."""
    return broken(inventory)[: batch_size(inventory.current, fraction)]


async def replace(
    target: targets.Target, policy: spec.GroupPolicy, victims: Sequence[model.Instance], at: float
) -> Replacement:
    """Clone as many new members as there are victims, then remove one victim per successful clone."""
    names = tuple(v.name for v in victims)
    created = await target.scale_out(policy, len(victims))
    if not created.done:
        return Replacement(at, names, (), (), created.errors)
    removed = await target.scale_in(policy, names[: len(created.done)])
    return Replacement(at, names, created.done, removed.done, created.errors + removed.errors)
