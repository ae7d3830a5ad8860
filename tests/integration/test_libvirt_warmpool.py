"""Warm pools on a real libvirtd with QEMU: a scale-out resumes a paused domain or starts a shut-off one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from autoscaler import model
from autoscaler.policy import spec
from autoscaler.targets import kvm
from autoscaler.virt import ops, xml
from tests.integration import libvirt_env
from tests.integration.test_libvirt_target import settings
from tests.targets.hosts import eventually

pytestmark = pytest.mark.integration_libvirt
GROUP = "itlv-pool"


def pool_policy(env: libvirt_env.LibvirtEnv, size: int, state: str) -> spec.GroupPolicy:
    return spec.GroupPolicy.model_validate(
        {
            "group": GROUP,
            "golden": env.golden,
            "template": env.template,
            "pool": env.pool,
            "min": 0,
            "max": 10,
            "warmup": 0.0,
            "readiness": spec.Readiness(interval=0.1, timeout=120.0),
            "warm_pool": {"size": size, "state": state},
        }
    )


@pytest.fixture(params=["paused", "shutoff"])
async def pooled(
    request: pytest.FixtureRequest, libvirt_host: libvirt_env.LibvirtEnv
) -> AsyncIterator[kvm.KvmTarget]:
    policy = pool_policy(libvirt_host, 1, request.param)
    target = kvm.KvmTarget(libvirt_host.uri, settings=settings(), policies=[policy])
    await target.start()
    yield target
    empty = pool_policy(libvirt_host, 0, request.param)
    members = [i.name for i in (await target.inventory(GROUP)).instances]
    await target.scale_in(empty, members)
    target.set_policies([empty])
    await eventually(lambda: not target._cache.pooled(GROUP), 30.0)
    await target.close()


def parked(target: kvm.KvmTarget, run: str) -> bool:
    records = target._cache.pooled(GROUP)
    return len(records) == 1 and records[0].run == run


async def run_state(target: kvm.KvmTarget, name: str) -> str:
    gw = target.gateway(target.hosts[0])
    return (await gw.run(ops.find_by_name, name, op="lookup")).run


async def test_scale_out_takes_the_pooled_domain_then_refills(
    pooled: kvm.KvmTarget, libvirt_host: libvirt_env.LibvirtEnv
) -> None:
    state = next(iter(pooled._policies.values())).warm_pool.state
    policy = pool_policy(libvirt_host, 1, state)
    await eventually(lambda: parked(pooled, state), 60.0)
    [waiting] = pooled._cache.pooled(GROUP)
    assert await run_state(pooled, waiting.name) == state

    began = time.monotonic()
    taken = await pooled.scale_out(policy, 1)
    from_pool = time.monotonic() - began
    assert taken.done == (waiting.name,)
    assert await run_state(pooled, waiting.name) == "running"

    await eventually(lambda: parked(pooled, state), 60.0)  # refilled in the background
    without_pool = pool_policy(libvirt_host, 0, state)
    pooled.set_policies([without_pool])
    await eventually(lambda: not pooled._cache.pooled(GROUP), 30.0)  # emptied: the next one is a clone
    began = time.monotonic()
    cloned = await pooled.scale_out(without_pool, 1)
    by_clone = time.monotonic() - began
    assert cloned.failed == 0
    await eventually(lambda: len([r for r in pooled._cache.members(GROUP) if r.owner.ready]) == 2, 60.0)
    inventory = await pooled.inventory(GROUP)
    assert inventory.ready == 2
    assert {i.state for i in inventory.instances} == {model.InstanceState.READY}
    print(f"\n1 instance from a {state} warm pool: {from_pool:.3f}s; by linked clone: {by_clone:.3f}s")


async def test_pooled_domain_survives_a_restart_of_the_daemon(
    pooled: kvm.KvmTarget, libvirt_host: libvirt_env.LibvirtEnv
) -> None:
    state = next(iter(pooled._policies.values())).warm_pool.state
    await eventually(lambda: parked(pooled, state), 60.0)
    [waiting] = pooled._cache.pooled(GROUP)
    again = kvm.KvmTarget(
        libvirt_host.uri, settings=settings(), policies=[pool_policy(libvirt_host, 1, state)]
    )
    await again.start()
    try:
        assert [r.uuid for r in again._cache.pooled(GROUP)] == [waiting.uuid]
        assert (await again.inventory(GROUP)).pooled == 1
        owner = xml.parse_metadata(
            (await again.gateway(libvirt_host.uri).run(ops.get_domain, waiting.uuid, op="lookup")).metadata
            or ""
        )
        assert owner is not None
        assert owner.phase is xml.Phase.POOLED
    finally:
        await again.close()
