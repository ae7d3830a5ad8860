"""The scale-in path: removing named members, and the one destroy sequence everything else reuses.

Scale-in, warm-pool trimming, failed takes and the reconciler all remove a domain the same way:
under its lock, marked busy meanwhile, then dropped from the cache with its load readings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Collection, Sequence

from autoscaler import model
from autoscaler.policy import spec
from autoscaler.targets import inventory as membership
from autoscaler.targets import lifecycle, outcomes, resources
from autoscaler.targets.state import KvmState
from autoscaler.virt import xml


async def scale_in(state: KvmState, policy: spec.GroupPolicy, victims: Sequence[str]) -> model.ScaleResult:
    """Remove the named members; names that are not members of this group are refused."""
    found = [(name, state.cache.find(policy.group, name)) for name in victims]
    refusals = [f"{name}: not a member of group {policy.group}" for name, rec in found if rec is None]
    records = [rec for _name, rec in found if rec is not None]
    gathered = await asyncio.gather(
        *(_remove_named(state, r, policy.pool) for r in records), return_exceptions=True
    )
    result = outcomes.result(gathered, refused=0)
    await resources.refresh_memory(state)
    return dataclasses.replace(
        result, failed=result.failed + len(refusals), errors=(*result.errors, *refusals)
    )


async def _remove_named(state: KvmState, record: membership.Record, pool: str) -> str:
    """Remove one member; returns its name for the result."""
    await remove(state, record, pool)
    return record.name


async def remove(
    state: KvmState,
    record: membership.Record,
    pool: str | None,
    expected: Collection[xml.Phase] | None = None,
) -> bool:
    """The destroy sequence under the domain's lock; the cache shows it draining meanwhile.

    With `expected`, the caller decided on an older look at the domain (the reconciler, the pool
    trim): once the lock is held it is removed only if the cache still shows it idle and in one of
    those phases, since a scale-out may have taken it or the watch promoted it meanwhile. Returns
    whether it was removed.
    """
    async with state.locks[record.uuid]:
        if expected is not None and not _still(state, record, expected):
            return False
        state.busy.add(record.uuid)
        started = time.monotonic()
        try:
            gw = state.gateways[record.host]
            await lifecycle.destroy(gw, record, state.settings.stop, pool, state.volumes)
        finally:
            state.busy.discard(record.uuid)
        state.observer.destroyed(record.group, time.monotonic() - started)
        state.cache.drop(record.host, record.uuid)
        state.cpu.pop(record.uuid, None)
    return True


def _still(state: KvmState, record: membership.Record, expected: Collection[xml.Phase]) -> bool:
    """Whether the domain is still cached, idle and in a phase the caller decided on."""
    current = state.cache.get(record.host, record.uuid)
    return current is not None and record.uuid not in state.busy and current.owner.phase in expected
