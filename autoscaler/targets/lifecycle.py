"""The clone and destroy sequences, step by step, in an order a crash can interrupt anywhere.

Clone (libvirt.md §5): UUID and name first, then the overlay named with the UUID, then (for a
group with an identity) the cloud-init seed uploaded, then the domain defined with
phase=creating, then started; phase=active only once ready. Destroy (§4): phase=draining,
graceful shutdown re-sent until a timeout, destroy, undefine with flag fallbacks, delete the
overlay and the seed. Every step is idempotent, so the reconciler can re-run any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os.path
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from autoscaler import errors
from autoscaler.targets import TargetObserver, seeds
from autoscaler.targets.inventory import Record
from autoscaler.targets.volumes import Volumes
from autoscaler.virt import gateway, ops, xml

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided before the first step of one clone."""

    uuid: str
    name: str
    host: str
    pool: str
    golden: ops.Golden
    template: str
    """The template's domain XML."""
    owner: xml.Ownership
    identity: seeds.Plan | None = None
    """The clone's identity and seed documents, when its group gives clones one."""


@dataclass(frozen=True, slots=True)
class StopTimings:
    """How patiently a domain is stopped."""

    shutdown_timeout: float = 30.0
    """Wait this long for the guest to power off before destroying it."""
    resend_interval: float = 3.0
    """Re-send the ACPI request this often (a booting guest ignores the first one)."""
    poll_interval: float = 0.2
    """How often the run state is polled while waiting."""


async def create_overlay(gw: gateway.Gateway, plan: Plan, volumes: Volumes) -> str:
    """Step 2: the qcow2 overlay, its backing format explicit, recorded as ours first; its path."""
    name = xml.overlay_name(plan.owner.group, plan.uuid)
    volume = xml.volume_xml(name, plan.golden.capacity, plan.golden.path, plan.golden.format)
    return await volumes.create(gw, plan.pool, name, volume, "overlay", plan.uuid)


async def create_seed(gw: gateway.Gateway, plan: Plan, volumes: Volumes) -> xml.SeedDisk | None:
    """Step 2b: the cloud-init seed volume, recorded as ours, then uploaded (none without identity)."""
    if plan.identity is None:
        return None
    return await seeds.create(gw, volumes, plan.pool, plan.owner.group, plan.uuid, plan.identity.documents)


async def define(
    gw: gateway.Gateway, plan: Plan, overlay_path: str, seed: xml.SeedDisk | None = None
) -> None:
    """Step 3: the persistent domain with phase=creating in its metadata."""
    serial = plan.identity.serial if plan.identity is not None else None
    clone = xml.CloneSpec(
        plan.name, plan.uuid, overlay_path, plan.golden.path, plan.golden.format, plan.owner, seed, serial
    )
    try:
        domain_xml = xml.clone_domain_xml(plan.template, clone)
    except ValueError as exc:
        raise errors.TargetPermanent(f"template unusable: {exc}") from exc
    await gw.run(ops.define, domain_xml, op="define")


async def start(gw: gateway.Gateway, plan: Plan) -> None:
    """Step 4: boot it."""
    await gw.run(ops.start, plan.uuid, op="start")


async def clone(
    gw: gateway.Gateway, plan: Plan, volumes: Volumes, observer: TargetObserver, boot: bool = True
) -> Record:
    """All steps of one clone, timing each phase; on failure the steps done so far are undone.

    `boot=False` stops after the definition (a warm-pool domain that waits shut off).
    """
    group = plan.owner.group
    overlay = ""
    seed: xml.SeedDisk | None = None
    try:
        overlay = await _timed(observer, group, "overlay", create_overlay(gw, plan, volumes))
        if plan.identity is not None:
            seed = await _timed(observer, group, "seed", create_seed(gw, plan, volumes))
        await _timed(observer, group, "define", define(gw, plan, overlay, seed))
        if boot:
            await _timed(observer, group, "start", start(gw, plan))
        view = await gw.run(ops.get_domain, plan.uuid, op="lookup")
    except BaseException:
        with contextlib.suppress(errors.TargetError):
            await _undo(gw, plan, overlay, seed, volumes)
        raise
    return Record(plan.uuid, plan.name, plan.host, plan.owner, view.run, view.memory)


async def _timed(observer: TargetObserver, group: str, phase: str, step: Awaitable[T]) -> T:
    """Await one step and report how long it took."""
    started = time.monotonic()
    result = await step
    observer.provisioned(group, phase, time.monotonic() - started)
    return result


async def _undo(
    gw: gateway.Gateway, plan: Plan, overlay: str, seed: xml.SeedDisk | None, volumes: Volumes
) -> None:
    """Compensate a failed clone in reverse: destroy, undefine, delete seed and overlay (if unused)."""
    with contextlib.suppress(gateway.NotFound):
        await gw.run(ops.destroy, plan.uuid, op="destroy")
    with contextlib.suppress(gateway.NotFound):
        await gw.run(ops.undefine, plan.uuid, op="undefine")
    if seed is not None:
        await seeds.delete(gw, volumes, seed)
    if overlay:
        await volumes.delete_path(gw, overlay)


async def set_phase(gw: gateway.Gateway, uuid: str, owner: xml.Ownership) -> None:
    """Persist a new phase (creating -> active, or -> draining) in the domain's metadata."""
    await gw.run(ops.set_metadata, uuid, xml.metadata_xml(owner), op="metadata")


async def destroy(
    gw: gateway.Gateway, record: Record, timings: StopTimings, pool: str | None, volumes: Volumes
) -> None:
    """The whole idempotent destroy sequence for one of our domains (the record is updated).

    Its overlay and seed, read from its own definition, are deleted once the domain is undefined,
    unless another domain uses them; when the domain was gone already, only volumes the ledger
    holds are.
    """
    overlays: list[str] = []
    attached: list[xml.SeedDisk] = []
    try:
        # A pooled domain keeps its phase: cut short, it is still a valid pooled domain (or gone),
        # the reconciler decides again, and it never shows up as a draining member meanwhile.
        if record.owner.phase not in (xml.Phase.DRAINING, xml.Phase.POOLED):
            record.owner = record.owner.with_phase(xml.Phase.DRAINING)
            await set_phase(gw, record.uuid, record.owner)
        disks = await gw.run(ops.disk_paths, record.uuid, op="lookup")
        overlays = [path for path in disks if _is_our_overlay(path, record)]
        attached = [d for d in await seeds.attached(gw, record.uuid) if _is_our_seed(d, record)]
        if record.owner.phase is xml.Phase.POOLED:  # no guest work to save: no graceful stop
            await gw.run(ops.destroy, record.uuid, op="destroy")
        else:
            await stop(gw, record.uuid, timings)
        await gw.run(ops.undefine, record.uuid, op="undefine")
    except gateway.NotFound:
        pass  # the domain is gone already: only its overlay may be left
    for path in overlays:
        await volumes.delete_path(gw, path, vouched=True)
    if not overlays and pool is not None:
        await volumes.delete(gw, pool, xml.overlay_name(record.group, record.uuid))
    for seed in attached:
        await seeds.delete(gw, volumes, seed, vouched=True)
    if not attached and pool is not None:
        await seeds.delete(gw, volumes, xml.SeedDisk(pool, xml.seed_name(record.group, record.uuid)))


def _is_our_seed(disk: xml.SeedDisk, record: Record) -> bool:
    """Only the seed named after this domain's UUID is ever deleted with it."""
    return disk.volume == xml.seed_name(record.group, record.uuid)


def _is_our_overlay(path: str, record: Record) -> bool:
    """Only the overlay named after this domain's UUID is ever deleted with it."""
    return os.path.basename(path) == xml.overlay_name(record.group, record.uuid)


async def stop(gw: gateway.Gateway, uuid: str, timings: StopTimings) -> None:
    """Ask politely (re-sending), then force; returns once the domain is not running.

    A paused guest cannot act on the request (QEMU answers "domain is not running"), so it is
    forced off at once instead of after the whole timeout.
    """
    deadline = time.monotonic() + timings.shutdown_timeout
    next_send = 0.0
    while time.monotonic() < deadline:
        run = await gw.run(ops.run_state, uuid, op="state")
        if run == "paused":
            break
        if run != "running":
            return
        if time.monotonic() >= next_send:
            await gw.run(ops.shutdown, uuid, op="shutdown")
            next_send = time.monotonic() + timings.resend_interval
        await asyncio.sleep(timings.poll_interval)
    await gw.run(ops.destroy, uuid, op="destroy")
