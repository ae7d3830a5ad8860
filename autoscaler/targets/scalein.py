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
from autoscaler.targets import draining, lifecycle, outcomes, resources
from autoscaler.targets import inventory as membership
from autoscaler.targets.state import KvmState
from autoscaler.virt import xml


async def scale_in(state: KvmState, policy: spec.GroupPolicy, victims: Sequence[str]) -> model.ScaleResult:
    """Remove the named members; names that are not members of this group are refused."""
    found = [(name, state.cache.find(policy.group, name)) for name in victims]
    refusals = [f"{name}: not a member of group {policy.group}" for name, rec in found if rec is None]
    records = [rec for _name, rec in found if rec is not None]
    removal = _drain_named if policy.group in state.served else _remove_named
    gathered = await asyncio.gather(
        *(removal(state, r, policy.pool) for r in records), return_exceptions=True
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


async def _drain_named(state: KvmState, record: membership.Record, pool: str) -> str:
    """Begin the drain of a served member (it leaves the size now, the domain once drained)."""
    await draining.begin(state, record, pool, destroy)
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
    if _drains(state, record):
        if expected is not None and not _still(state, record, expected):
            return False
        cached = state.cache.get(record.host, record.uuid) or record
        draining.resume(state, cached, pool, destroy)
        return False  # removed by the drain, once every balancer confirmed it left
    async with state.locks[record.uuid]:
        if expected is not None and not _still(state, record, expected):
            return False
        await _destroy_locked(state, record, pool)
    return True


async def destroy(state: KvmState, record: membership.Record, pool: str | None) -> None:
    """The destroy sequence under the domain's lock (after a drain: no phase check)."""
    async with state.locks[record.uuid]:
        await _destroy_locked(state, record, pool)


def _drains(state: KvmState, record: membership.Record) -> bool:
    """A draining member of a served group is removed by its drain, never directly."""
    return record.owner.phase is xml.Phase.DRAINING and record.group in state.served


async def _destroy_locked(state: KvmState, record: membership.Record, pool: str | None) -> None:
    """The destroy sequence; the caller holds the domain's lock."""
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


def _still(state: KvmState, record: membership.Record, expected: Collection[xml.Phase]) -> bool:
    """Whether the domain is still cached, idle and in a phase the caller decided on."""
    current = state.cache.get(record.host, record.uuid)
    return current is not None and record.uuid not in state.busy and current.owner.phase in expected
