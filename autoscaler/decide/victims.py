"""Which members a scale-in removes: broken ones first, then not-ready ones, then the policy's order.

Among ready members, those cloned from a golden image the policy no longer names go before the
rest, so a new golden image replaces the old one as the group breathes in and out.
"""

from __future__ import annotations

from autoscaler import model
from autoscaler.decide import stages
from autoscaler.policy import spec

_STATE_RANK = {
    model.InstanceState.FAILED: 0,
    model.InstanceState.BOOTING: 1,
    model.InstanceState.REGISTERING: 1,
    model.InstanceState.READY: 2,
}
"""Members not yet serving (failed, booting, registering) go before those that serve."""


def _policy_key(order: str, instance: model.Instance) -> tuple[float, str]:
    if order == "oldest":
        return instance.created_at, instance.name
    if order == "least_loaded":
        load = instance.load if instance.load is not None else float("inf")
        return load, instance.name
    return -instance.created_at, instance.name


def choose(
    policy: spec.GroupPolicy, inventory: model.GroupInventory, count: int, now: float
) -> tuple[str, ...]:
    """The names of `count` members to remove, in removal order."""
    if count <= 0:
        return ()
    candidates = stages.removable(policy, inventory, now)
    ranked = sorted(
        candidates,
        key=lambda i: (_STATE_RANK.get(i.state, 2), not i.outdated, *_policy_key(policy.scale_in_order, i)),
    )
    return tuple(i.name for i in ranked[:count])
