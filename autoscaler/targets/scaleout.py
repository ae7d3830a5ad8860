"""The scale-out path: admission by free memory, then warm-pool takes and fresh clones in parallel.

A scale-out takes idle pooled domains first and clones the rest on hosts chosen by placement; while
any scale-out runs the pool refill waits (`KvmState.idle`), and each one asks for a refill after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from autoscaler import errors, model
from autoscaler.policy import spec
from autoscaler.targets import (
    NullObserver,
    lifecycle,
    outcomes,
    placement,
    resources,
    scalein,
    seeds,
    warmpool,
)
from autoscaler.targets import inventory as membership
from autoscaler.targets.state import KvmState, MiB
from autoscaler.virt import ops, xml


async def scale_out(state: KvmState, policy: spec.GroupPolicy, count: int) -> model.ScaleResult:
    """Take `count` instances from the warm pool, clone the rest placed by free memory.

    CapacityLimited when nothing fits; the pool is refilled in the background afterwards.
    """
    if count <= 0:
        return model.ScaleResult()
    state.scaling_out += 1
    state.idle.clear()
    try:
        return await _admit_and_run(state, policy, count)
    finally:
        state.scaling_out -= 1
        if not state.scaling_out:
            state.idle.set()
        state.refill_wanted.set()


async def _admit_and_run(state: KvmState, policy: spec.GroupPolicy, count: int) -> model.ScaleResult:
    """Admission, then the takes and clones in parallel."""
    template = await resources.template(state, policy)
    size = resources.size(state, policy, template)
    with_image = await resources.with_golden(state, policy, resources.connected_free(state))
    await resources.refresh_memory(state)
    # From here to the reservation nothing awaits: two scale-outs never count the same memory.
    free = {h: m for h, m in resources.connected_free(state).items() if h in with_image}
    vcpus = state.vcpus.get(policy.group, 0)
    idle_pool = [r for r in state.cache.pooled(policy.group) if r.uuid not in state.busy]
    reserve = state.settings.memory_reserve
    taken = warmpool.choose(idle_pool, policy, count, free, size, reserve)
    state.busy.update(r.uuid for r in taken)
    hosts = resources.placement_hosts(state, policy.group, free)
    chosen = placement.place(hosts, size, reserve, count - len(taken), vcpus)
    refused = count - len(taken) - len(chosen)
    for _ in range(refused):
        state.observer.capacity_refused(policy.group)
    if not taken and not chosen:
        raise errors.CapacityLimited(
            f"no host has {size // MiB} MiB free plus the reserve and room for {vcpus} vCPU(s)"
        )
    jobs = [take_one(state, policy, r) for r in taken]
    jobs += [clone_one(state, policy, host, template) for host in chosen]
    starting = [r.host for r in taken if not warmpool.holds_memory(r)] + chosen
    try:
        async with resources.reserving(state, starting, size, vcpus):
            gathered = await asyncio.gather(*jobs, return_exceptions=True)
    finally:  # a take cancelled before it began must not stay busy forever
        state.busy.difference_update(r.uuid for r in taken)
    return outcomes.result(gathered, refused=refused)


async def clone_one(
    state: KvmState, policy: spec.GroupPolicy, host: str, template: str, pooled: bool = False
) -> membership.Record:
    """One clone on one host, with a fresh UUID (and name) when the name is taken.

    A pooled clone is not timed as provisioning; it boots only when its pool waits paused or
    boots its clones once before they wait shut off.
    """
    gw = state.gateways[host]
    golden = await resources.golden(state, gw, policy)
    observer = NullObserver() if pooled else state.observer
    boot = not pooled or warmpool.boots_first(policy)
    for _ in range(state.settings.name_attempts):
        new = plan(state, policy, host, template, golden, pooled)
        if new.name in state.cache.names(host):
            continue
        async with state.locks[new.uuid]:
            state.busy.add(new.uuid)
            started = time.monotonic()
            try:
                record = await lifecycle.clone(gw, new, state.volumes, observer, boot)
            except errors.Conflict:
                continue
            finally:
                state.busy.discard(new.uuid)
            observer.cloned(policy.group, time.monotonic() - started)
            state.cache.upsert(record)
            return record
    raise errors.Conflict(f"no free domain name for group {policy.group} on {host}")


def plan(
    state: KvmState,
    policy: spec.GroupPolicy,
    host: str,
    template: str,
    golden: ops.Golden,
    pooled: bool = False,
) -> lifecycle.Plan:
    """UUID, name and ownership chosen before the first step."""
    new_uuid = state.new_uuid()
    owner = xml.Ownership(
        group=policy.group,
        golden=policy.golden,
        generation=warmpool.fingerprint(policy) if pooled else membership.revision(policy),
        created=state.stamp(),
        phase=xml.Phase.POOLED if pooled else xml.Phase.CREATING,
        host=host,
    )
    name = xml.clone_name(policy.group, new_uuid)
    identity = None
    if policy.instance is not None:
        identity = seeds.plan(policy.instance, name, new_uuid, policy.group, host)
    return lifecycle.Plan(new_uuid, name, host, policy.pool, golden, template, owner, identity)


async def take_one(state: KvmState, policy: spec.GroupPolicy, record: membership.Record) -> membership.Record:
    """One domain out of the warm pool (already marked busy); a failed take is removed."""
    owner = warmpool.joining(record, policy, membership.revision(policy), state.stamp())
    started = time.monotonic()
    try:
        async with state.locks[record.uuid]:
            try:
                await warmpool.take(state.gateways[record.host], record, owner)
            finally:
                state.busy.discard(record.uuid)
    except errors.TargetError:
        with contextlib.suppress(errors.TargetError):
            await scalein.remove(state, record, policy.pool)
        raise
    state.cache.upsert(record)
    state.observer.provisioned(policy.group, "start", time.monotonic() - started)
    return record
