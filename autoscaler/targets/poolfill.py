"""Keeping the warm pools full: bounded background refill rounds that yield to every scale-out.

`warmpool` holds the pure rules and the take/park sequences; this module is the loop that trims
stale or surplus pooled domains and clones new ones, one at a time, only while no scale-out runs.
"""

from __future__ import annotations

import structlog

from autoscaler import errors
from autoscaler.policy import spec
from autoscaler.targets import placement, resources, scalein, scaleout, warmpool
from autoscaler.targets.state import KvmState
from autoscaler.virt import xml

log = structlog.get_logger(__name__)


async def fill_pools(state: KvmState) -> int:
    """One bounded refill round of every governed group's warm pool; returns how many were cloned.

    Surplus and stale pooled domains are removed first. Each clone waits until no scale-out
    runs, and a round clones at most `pool_fill_batch` per group, one at a time.
    """
    made = 0
    for policy in list(state.policies.values()):
        if state.cache.ready:
            made += await _refill_group(state, policy)
    return made


async def _refill_group(state: KvmState, policy: spec.GroupPolicy) -> int:
    """Trim then fill one group's pool; a failure is logged and ends only this group's turn.

    A broken group (its golden image gone, say) must not keep the groups after it from refilling.
    """
    try:
        await _trim_pool(state, policy)
        return await _fill_group(state, policy)
    except errors.TargetError as exc:
        log.warning(
            "warm_pool_refill_failed", group=policy.group, error=str(exc), error_class=exc.error_class
        )
        return 0


async def refill_loop(state: KvmState) -> None:
    """Refill the pools whenever asked (after a scale-out, a reconcile or a policy change).

    A standby daemon never refills; the reconcile that follows its taking over asks again.
    """
    while True:
        await state.refill_wanted.wait()
        state.refill_wanted.clear()
        if not state.may_act():
            continue
        try:
            await fill_pools(state)
        except errors.TargetError as exc:
            log.warning("warm_pool_refill_failed", error=str(exc), error_class=exc.error_class)


async def _trim_pool(state: KvmState, policy: spec.GroupPolicy) -> None:
    """Remove idle pooled domains the policy no longer wants (stale, broken, beyond the size)."""
    idle = [r for r in state.cache.pooled(policy.group) if r.uuid not in state.busy]
    for record in warmpool.surplus(idle, policy):
        await scalein.remove(state, record, policy.pool, {xml.Phase.POOLED})


async def _fill_group(state: KvmState, policy: spec.GroupPolicy) -> int:
    """Clone pooled domains one at a time until the pool is full or the batch is spent."""
    made = 0
    batch = state.settings.pool_fill_batch
    while made < batch and warmpool.deficit(state.cache.pooled(policy.group), policy):
        await state.idle.wait()
        template = await resources.template(state, policy)
        size = resources.size(state, policy, template)
        host = await _pool_host(state, policy, size)
        if host is None:
            break
        booting = [host] if warmpool.boots_first(policy) else []
        async with resources.reserving(state, booting, size):
            await scaleout.clone_one(state, policy, host, template, pooled=True)
        made += 1
    if made == batch:
        state.refill_wanted.set()  # more to do: another round, after whatever else is waiting
    return made


async def _pool_host(state: KvmState, policy: spec.GroupPolicy, size: int) -> str | None:
    """Where the next pooled domain goes; one that boots (paused or boot-once pools) must pass
    admission, one that is only defined and waits shut off holds no memory and need not."""
    await resources.refresh_memory(state)
    free = resources.connected_free(state)
    if not free:
        return None
    if not warmpool.boots_first(policy):
        return max(free, key=lambda h: (free[h], h))
    hosts = resources.placement_hosts(state, policy.group, free)
    vcpus = state.vcpus.get(policy.group, 0)
    chosen = placement.place(hosts, size, state.settings.memory_reserve, 1, vcpus)
    return chosen[0] if chosen else None
