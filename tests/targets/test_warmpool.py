"""Warm pools on the test driver: filled, taken first by scale-out, refilled, admitted, trimmed."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Collection

import pytest

from autoscaler import errors, model
from autoscaler.policy import spec
from autoscaler.targets import kvm, lifecycle, scalein, warmpool
from autoscaler.targets import reconcile as reconciling
from autoscaler.targets.inventory import Record
from autoscaler.virt import ops, xml
from tests.targets.hosts import (
    MiB,
    eventually,
    fast_settings,
    host_uri,
    new_member,
    shutdown_like_qemu,
    web_policy,
)


def pooled_policy(size: int = 2, state: str = "shutoff", **changes: object) -> spec.GroupPolicy:
    return web_policy(warm_pool={"size": size, "state": state}, **changes)


async def started(
    tmp_path: pathlib.Path, policy: spec.GroupPolicy, memory_mib: int = 4096, reserve_mib: int = 256
) -> kvm.KvmTarget:
    target = kvm.KvmTarget(
        host_uri(tmp_path, memory_mib=memory_mib),
        settings=fast_settings(memory_reserve=reserve_mib * MiB),
        policies=[policy],
    )
    await target.start()
    return target


@pytest.fixture
async def shutoff_pool(tmp_path: pathlib.Path) -> AsyncIterator[kvm.KvmTarget]:
    target = await started(tmp_path, pooled_policy())
    yield target
    await target.close()


async def views(target: kvm.KvmTarget) -> dict[str, ops.DomainView]:
    gw = target.gateway(target.hosts[0])
    return {v.name: v for v in await gw.run(ops.list_domains, op="list")}


def phase_of(view: ops.DomainView) -> xml.Phase | None:
    owner = xml.parse_metadata(view.metadata) if view.metadata else None
    return owner.phase if owner else None


async def pooled_in_libvirt(target: kvm.KvmTarget) -> dict[str, str]:
    return {n: v.run for n, v in (await views(target)).items() if phase_of(v) is xml.Phase.POOLED}


def full(target: kvm.KvmTarget, size: int, run: str) -> bool:
    pooled = target._cache.pooled("web")
    return len(pooled) == size and all(r.run == run for r in pooled)


# --- pure rules --------------------------------------------------------------------------------


def record(uuid: str, run: str, created: float, policy: spec.GroupPolicy, host: str = "h") -> Record:
    owner = xml.Ownership("web", policy.golden, warmpool.fingerprint(policy), created, xml.Phase.POOLED)
    return Record(uuid, f"as-web-{uuid}", host, owner, run, 512 * MiB)


def test_fingerprint_follows_clone_shape_not_thresholds() -> None:
    base = warmpool.fingerprint(pooled_policy())
    assert warmpool.fingerprint(pooled_policy(size=5, max=3)) == base
    assert warmpool.fingerprint(pooled_policy(golden="other.qcow2")) != base
    assert warmpool.fingerprint(pooled_policy(state="paused")) != base


def test_surplus_keeps_the_size_preferring_parked_and_old() -> None:
    policy = pooled_policy(size=2, state="paused")
    young, old, booting = (
        record("a", "paused", 30.0, policy),
        record("b", "paused", 10.0, policy),
        record("c", "running", 1.0, policy),
    )
    stale = record("d", "paused", 0.0, pooled_policy(golden="old.qcow2"))
    assert {r.uuid for r in warmpool.surplus([young, old, booting, stale], policy)} == {"c", "d"}


def test_choose_takes_memory_holders_first_and_admits_shutoff_ones() -> None:
    policy = pooled_policy(size=4, state="paused")
    cold = [record("a", "shutoff", 1.0, policy), record("b", "shutoff", 2.0, policy, host="g")]
    warm = record("c", "paused", 9.0, policy)
    free = {"h": 1024 * MiB, "g": 256 * MiB}
    taken = warmpool.choose([*cold, warm], policy, 3, free, 512 * MiB, 256 * MiB)
    assert [r.uuid for r in taken] == ["c", "a"]  # "b" cannot start on host g
    assert free == {"h": 512 * MiB, "g": 256 * MiB}


# --- the target --------------------------------------------------------------------------------


async def test_shutoff_pool_is_filled_and_never_counted(shutoff_pool: kvm.KvmTarget) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    pooled = await pooled_in_libvirt(shutoff_pool)
    assert set(pooled.values()) == {"shutoff"}
    inventory = await shutoff_pool.inventory("web")
    assert inventory.current == 0
    assert inventory.pooled == 2
    assert shutoff_pool.pooled() == {"web": 2}
    refused = await shutoff_pool.scale_in(pooled_policy(), list(pooled))
    assert refused.failed == 2
    assert await pooled_in_libvirt(shutoff_pool) == pooled


async def test_scale_out_takes_the_pool_first_then_clones_and_refills(shutoff_pool: kvm.KvmTarget) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    pooled = set(await pooled_in_libvirt(shutoff_pool))

    result = await shutoff_pool.scale_out(pooled_policy(), 3)

    assert result.failed == 0
    assert pooled < set(result.done)
    seen = await views(shutoff_pool)
    assert {seen[n].run for n in result.done} == {"running"}
    await eventually(
        lambda: (len(shutoff_pool._cache.members("web")) == 3) and full(shutoff_pool, 2, "shutoff")
    )
    await eventually(
        lambda: all(r.owner.phase is xml.Phase.ACTIVE for r in shutoff_pool._cache.members("web"))
    )
    inventory = await shutoff_pool.inventory("web")
    assert inventory.ready == 3
    assert inventory.pooled == 2
    assert not pooled & set(await pooled_in_libvirt(shutoff_pool))


async def test_taken_member_restarts_its_clock(shutoff_pool: kvm.KvmTarget) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    oldest = min(r.owner.created for r in shutoff_pool._cache.pooled("web"))
    member = await new_member(shutoff_pool, pooled_policy())
    assert member.owner.created > oldest
    assert member.owner.generation != warmpool.fingerprint(pooled_policy())


async def test_paused_pool_boots_then_parks_and_resumes(tmp_path: pathlib.Path) -> None:
    policy = pooled_policy(size=1, state="paused")
    target = await started(tmp_path, policy)
    try:
        await eventually(lambda: full(target, 1, "paused"))
        assert set((await pooled_in_libvirt(target)).values()) == {"paused"}
        # 4096 - 512 template - 256 foreign - 512 paused = 2816; minus 256 -> 5 clones, +1 pooled
        assert (await target.inventory("web")).headroom == 6
        result = await target.scale_out(policy, 1)
        assert (await views(target))[result.done[0]].run == "running"
        await eventually(lambda: full(target, 1, "paused"))
        await eventually(lambda: (target._cache.find("web", result.done[0]) or _none()).owner.ready)
    finally:
        await target.close()


async def test_boot_once_pool_waits_for_the_first_boot_before_it_shuts_down(tmp_path: pathlib.Path) -> None:
    # The channel probe never answers on the test driver: the first boot never finishes.
    booting = web_policy(
        warm_pool={"size": 1, "state": "shutoff", "boot_once": True},
        readiness={"probe": "channel", "interval": 0.05},
    )
    target = await started(tmp_path, booting)
    try:
        await eventually(lambda: full(target, 1, "running"))
        [pooled] = target._cache.pooled("web")
        # read again each time: a refresh of the listing replaces the cached record
        await eventually(lambda: any(r.last_probe > 0 for r in target._cache.pooled("web")))
        assert set((await pooled_in_libvirt(target)).values()) == {"running"}

        target.set_policies(
            [booting.model_copy(update={"readiness": spec.Readiness(interval=0.05)})]
        )  # answers

        await eventually(lambda: full(target, 1, "shutoff"))
        assert (await pooled_in_libvirt(target)) == {pooled.name: "shutoff"}
        result = await target.scale_out(booting, 1)
        assert result.done == (pooled.name,)
        assert (await views(target))[pooled.name].run == "running"
    finally:
        await target.close()


def test_boot_once_is_part_of_the_clone_shape() -> None:
    plain = warmpool.fingerprint(pooled_policy())
    assert warmpool.fingerprint(web_policy(warm_pool={"size": 2, "boot_once": True})) != plain


def _none() -> Record:
    raise AssertionError("member vanished")


async def test_shutoff_members_need_admission_to_start(tmp_path: pathlib.Path) -> None:
    # 2048 MiB host: template 512 + foreign 256 run -> 1280 free; reserve 512 -> room for one start.
    policy = pooled_policy(size=3)
    target = await started(tmp_path, policy, memory_mib=2048, reserve_mib=512)
    try:
        await eventually(lambda: full(target, 3, "shutoff"))  # shut off: they hold no memory
        result = await target.scale_out(policy, 2)
        assert len(result.done) == 1
        assert result.failed == 1
        with pytest.raises(errors.CapacityLimited):
            await target.scale_out(policy, 1)
    finally:
        await target.close()


async def test_paused_fill_respects_admission(tmp_path: pathlib.Path) -> None:
    policy = pooled_policy(size=3, state="paused")
    target = await started(tmp_path, policy, memory_mib=2048, reserve_mib=512)
    try:
        await eventually(lambda: full(target, 1, "paused"))
        assert await target.fill_pools() == 0
        assert len(target._cache.pooled("web")) == 1
    finally:
        await target.close()


async def test_reconcile_trims_beyond_size_and_stale(shutoff_pool: kvm.KvmTarget) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    shutoff_pool._policies["web"] = pooled_policy(size=1)
    [report] = await shutoff_pool.reconcile()
    assert len(report.pool_trimmed) == 1
    assert len(await pooled_in_libvirt(shutoff_pool)) == 1

    shutoff_pool._policies["web"] = pooled_policy(size=1, golden="golden-next.qcow2")
    [report] = await shutoff_pool.reconcile()
    assert len(report.pool_trimmed) == 1
    assert await volumes(shutoff_pool) == {"golden-web.qcow2"}


async def volumes(target: kvm.KvmTarget) -> set[str]:
    gw = target.gateway(target.hosts[0])
    return {v.name for v in await gw.run(ops.list_volumes, "default", op="vol_list")}


async def test_take_cut_short_while_paused_is_rolled_back(tmp_path: pathlib.Path) -> None:
    policy = pooled_policy(size=1, state="paused")
    target = await started(tmp_path, policy)
    try:
        await eventually(lambda: full(target, 1, "paused"))
        [pooled] = target._cache.pooled("web")
        owner = warmpool.joining(pooled, policy, "rev", 0.0)  # phase=creating written, resume never ran
        await target.gateway(target.hosts[0]).run(
            ops.set_metadata, pooled.uuid, xml.metadata_xml(owner), op="m"
        )
        [report] = await target.reconcile()
        assert report.rolled_back == [pooled.name]
        assert (await target.inventory("web")).instances == ()
    finally:
        await target.close()


async def test_pool_of_size_zero_is_emptied(shutoff_pool: kvm.KvmTarget) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    shutoff_pool.set_policies([pooled_policy(size=0)])
    await eventually(lambda: not shutoff_pool._cache.pooled("web"))
    assert await pooled_in_libvirt(shutoff_pool) == {}
    assert (await shutoff_pool.inventory("web")).instances == ()


async def test_members_are_unaffected_by_pool_states(shutoff_pool: kvm.KvmTarget) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    inventory = await shutoff_pool.inventory("web")
    assert all(i.state is not model.InstanceState.FAILED for i in inventory.instances)
    # 4096 - 512 template - 256 foreign = 3328; minus 256 -> 6: shut-off pooled domains hold no memory
    assert inventory.headroom == 6


async def test_a_pooled_domain_being_removed_never_shows_as_a_member(shutoff_pool: kvm.KvmTarget) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    victim = shutoff_pool._cache.pooled("web")[0]
    removal = asyncio.create_task(shutoff_pool._remove(victim, "default"))
    seen: list[tuple[model.Instance, ...]] = []
    while not removal.done():
        seen.append((await shutoff_pool.inventory("web")).instances)
        await asyncio.sleep(0)
    await removal
    assert seen
    assert all(instances == () for instances in seen)


async def test_a_late_scale_call_never_governs_a_removed_group(shutoff_pool: kvm.KvmTarget) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    shutoff_pool.set_policies([])  # the operator removed the group's policy file ...

    await shutoff_pool.scale_in(pooled_policy(), [])  # ... while a tick still held the old one
    await shutoff_pool.fill_pools()

    assert shutoff_pool._policies == {}
    assert shutoff_pool.unmanaged() == {"web": 2}


async def test_an_older_policy_passed_to_scale_out_does_not_replace_the_current_one(
    shutoff_pool: kvm.KvmTarget,
) -> None:
    newer = pooled_policy(max=30)
    shutoff_pool.set_policies([newer])

    await shutoff_pool.scale_out(pooled_policy(), 1)

    assert shutoff_pool._policies == {"web": newer}


async def test_a_broken_group_does_not_keep_the_next_groups_pool_empty(tmp_path: pathlib.Path) -> None:
    broken = pooled_policy(group="aaa", golden="golden-missing.qcow2")  # refilled first, fails
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[broken, pooled_policy()])
    await target.start()
    try:
        await eventually(lambda: full(target, 2, "shutoff"))
        assert target._cache.pooled("aaa") == []
    finally:
        await target.close()


async def test_trimming_a_paused_pool_forces_the_domains_off_without_waiting(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutdown_like_qemu(monkeypatch)
    settings = fast_settings(stop=lifecycle.StopTimings(shutdown_timeout=30.0, poll_interval=0.02))
    policy = pooled_policy(size=2, state="paused")
    target = kvm.KvmTarget(host_uri(tmp_path), settings=settings, policies=[policy])
    await target.start()
    try:
        await eventually(lambda: full(target, 2, "paused"))
        target.set_policies([pooled_policy(size=0, state="paused")])
        await eventually(lambda: target._cache.pooled("web") == [])  # not 2 x 30 s
        assert await pooled_in_libvirt(target) == {}
    finally:
        await target.close()


async def test_a_pooled_domain_taken_after_the_trim_decided_is_not_removed(
    shutoff_pool: kvm.KvmTarget,
) -> None:
    await eventually(lambda: full(shutoff_pool, 2, "shutoff"))
    state = shutoff_pool._state
    taken: list[str] = []

    async def take_then_remove(record: Record, pool: str | None, expected: Collection[xml.Phase]) -> bool:
        # A scale-out takes every pooled domain between the trim's choice and its removal.
        taken.extend((await shutoff_pool.scale_out(pooled_policy(), 2)).done)
        return await scalein.remove(state, record, pool, expected)

    gw = shutoff_pool.gateway(shutoff_pool.hosts[0])
    report = await reconciling.reconcile_host(
        gw,
        state.cache,
        busy=state.busy,
        policies={"web": pooled_policy(size=1)},  # one pooled domain too many
        pools={"default"},
        grace=state.settings.grace,
        now=state.clock(),
        remove=take_then_remove,
        volumes=state.volumes,
    )

    assert len(taken) == 2
    assert report.pool_trimmed == []
    assert set(taken) <= set(await views(shutoff_pool))
    assert {i.name for i in (await shutoff_pool.inventory("web")).instances} == set(taken)
