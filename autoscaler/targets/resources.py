"""What a clone is made of and where it fits: templates, golden images, sizes and free memory.

Scale-out, pool refill and the headroom all ask the same questions (what does one instance of the
group need, which host has room); this module answers them once, caching what never changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os.path
from collections.abc import AsyncIterator, Iterable

from autoscaler import errors
from autoscaler.policy import spec
from autoscaler.targets import inventory as membership
from autoscaler.targets import placement, warmpool
from autoscaler.targets.state import KvmState
from autoscaler.virt import gateway as gateways
from autoscaler.virt import ops, xml


async def template(state: KvmState, policy: spec.GroupPolicy) -> str:
    """The template XML: a file when the policy names a path, else a domain on a host."""
    if policy.template in state.templates:
        return state.templates[policy.template]
    if policy.template.startswith("/") or policy.template.endswith(".xml"):
        text = await asyncio.to_thread(_read_template, policy.template)
    else:
        gw = next((g for g in state.gateways.values() if g.connected), None)
        if gw is None:
            raise gateways.ConnectionLost("no host connected")
        try:
            text = await gw.run(ops.template_xml, policy.template, op="template")
        except gateways.NotFound as exc:
            raise errors.TargetPermanent(f"template domain {policy.template!r} not found") from exc
    state.templates[policy.template] = text
    return text


def size(state: KvmState, policy: spec.GroupPolicy, template_xml: str) -> int:
    """Memory of one instance of the group, in bytes."""
    try:
        memory = xml.memory_bytes(template_xml)
    except ValueError as exc:
        raise errors.TargetPermanent(f"template of {policy.group}: {exc}") from exc
    state.sizes[policy.group] = memory
    state.vcpus[policy.group] = xml.vcpus(template_xml)
    return memory


async def golden(state: KvmState, gw: gateways.Gateway, policy: spec.GroupPolicy) -> ops.Golden:
    """The golden image on one host, looked up once."""
    key = (gw.uri, policy.pool, policy.golden)
    if key not in state.goldens:
        try:
            state.goldens[key] = await gw.run(ops.golden, policy.pool, policy.golden, op="golden")
        except gateways.NotFound as exc:
            raise errors.TargetPermanent(f"golden image {policy.golden!r} not found on {gw.uri}") from exc
    return state.goldens[key]


async def refresh_memory(state: KvmState) -> None:
    """Read every connected host's free memory (for placement and headroom)."""
    for uri, gw in state.gateways.items():
        if gw.connected:
            with contextlib.suppress(errors.TargetError):
                memory = await gw.run(ops.host_memory, gw.is_test_driver, op="host_memory")
                state.free[uri] = memory.free
                state.cpus[uri] = (memory.cpus, memory.vcpus)


def connected_free(state: KvmState) -> dict[str, int]:
    """Free memory of the connected hosts whose memory has been read, less what is reserved."""
    return {
        h: state.free[h] - state.reserved[h]
        for h, gw in state.gateways.items()
        if gw.connected and h in state.free
    }


@contextlib.asynccontextmanager
async def reserving(state: KvmState, hosts: Iterable[str], size: int, vcpus: int = 0) -> AsyncIterator[None]:
    """Hold `size` bytes (and `vcpus`) on each host listed (once per entry) while domains placed
    there start.

    Two scale-outs (or a scale-out and a pool refill) read free memory at once; without the
    reservation both would count the same memory and overcommit a host. The memory is re-read
    before the reservation ends, so the started domains are counted by then; on failure the
    domains were undone and the older reading still holds.
    """
    held = collections.Counter(hosts)
    for host, count in held.items():
        state.reserved[host] += count * size
        state.reserved_vcpus[host] += count * vcpus
    try:
        yield
        await refresh_memory(state)
    finally:
        for host, count in held.items():
            state.reserved[host] -= count * size
            state.reserved_vcpus[host] -= count * vcpus


def placement_hosts(state: KvmState, group: str, free: dict[str, int]) -> list[placement.Host]:
    """Hosts with their free memory (connected ones, as given), vCPU room and the group's members."""
    members = collections.Counter(r.host for r in state.cache.members(group))
    return [placement.Host(uri, memory, members[uri], _vcpu_room(state, uri)) for uri, memory in free.items()]


def _vcpu_room(state: KvmState, host: str) -> int | None:
    """vCPUs the host may still give out, less those promised to domains starting there."""
    if host not in state.cpus or not state.cpus[host][0]:
        return None
    cpus, used = state.cpus[host]
    settings = state.settings
    promised = state.reserved_vcpus[host]
    return placement.vcpu_room(cpus, used + promised, settings.vcpu_reserve, settings.max_vcpu_ratio)


async def with_golden(state: KvmState, policy: spec.GroupPolicy, free: dict[str, int]) -> dict[str, int]:
    """The hosts of `free` that have the group's golden image; the others are skipped, with the
    reason kept for /status. TargetPermanent when none has it."""
    usable: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for host, memory in free.items():
        try:
            await golden(state, state.gateways[host], policy)
        except errors.TargetPermanent as exc:
            skipped[host] = str(exc)
            continue
        usable[host] = memory
    state.skipped[policy.group] = skipped
    if free and not usable:
        raise errors.TargetPermanent(f"golden image {policy.golden!r} is on no connected host")
    return usable


def headroom(state: KvmState, group: str) -> int | None:
    """How many more instances of the group fit; None until its size is known.

    Pooled domains that hold memory (paused) join without needing any more of it.
    """
    group_size = state.sizes.get(group)
    if group_size is None or not state.free:
        return None
    policy = state.policies.get(group)
    ready = 0 if policy is None else _paused_pooled(state.cache.pooled(group), policy)
    hosts = [
        placement.Host(h, free, 0, _vcpu_room(state, h))
        for h, free in state.free.items()
        if h not in state.dead
    ]
    vcpus = state.vcpus.get(group, 0)
    return placement.capacity(hosts, group_size, state.settings.memory_reserve, vcpus) + ready


def _paused_pooled(records: Iterable[membership.Record], policy: spec.GroupPolicy) -> int:
    """Usable pooled domains that already hold their memory."""
    return sum(1 for r in records if warmpool.usable(r, policy) and warmpool.holds_memory(r))


def _read_template(path: str) -> str:
    """A template file's text; a missing file is an operator problem."""
    if not os.path.isfile(path):
        raise errors.TargetPermanent(f"template file {path!r} not found")
    with open(path, encoding="utf-8") as handle:
        return handle.read()
