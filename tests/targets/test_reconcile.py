"""Every half-done state a crash can leave, repaired by a reconcile (steps run partially by hand)."""

from __future__ import annotations

import asyncio
import pathlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from autoscaler import model
from autoscaler.targets import kvm, lifecycle
from autoscaler.virt import gateway, ops, xml
from tests.targets.hosts import eventually, fast_settings, host_uri, new_member, web_policy


@pytest.fixture
async def target(tmp_path: pathlib.Path) -> AsyncIterator[kvm.KvmTarget]:
    started = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[web_policy()])
    await started.start()
    yield started
    await started.close()


async def plan_for(target: kvm.KvmTarget) -> tuple[gateway.Gateway, lifecycle.Plan]:
    policy = web_policy()
    gw = target.gateway(target.hosts[0])
    template = await target._template(policy)
    golden = await target._golden(gw, policy)
    return gw, target._plan(policy, gw.uri, template, golden)


async def state(gw: gateway.Gateway) -> tuple[set[str], set[str]]:
    names = {v.name for v in await gw.run(ops.list_domains, op="list")}
    vols = {v.name for v in await gw.run(ops.list_volumes, "default", op="vol_list")}
    return names, vols


BASELINE = ({"web-template", "as-web-deadbeef"}, {"golden-web.qcow2"})


async def test_overlay_without_domain_is_deleted(target: kvm.KvmTarget) -> None:
    gw, plan = await plan_for(target)
    await lifecycle.create_overlay(gw, plan, target.volumes)

    [report] = await target.reconcile()

    assert report.orphan_overlays == [xml.overlay_name("web", plan.uuid)]
    assert await state(gw) == BASELINE


async def test_defined_never_started_is_rolled_back(target: kvm.KvmTarget) -> None:
    gw, plan = await plan_for(target)
    await lifecycle.define(gw, plan, await lifecycle.create_overlay(gw, plan, target.volumes))

    [report] = await target.reconcile()

    assert report.rolled_back == [plan.name]
    assert await state(gw) == BASELINE


async def test_started_but_never_ready_past_timeout_is_rolled_back(tmp_path: pathlib.Path) -> None:
    policy = web_policy(readiness={"probe": "channel", "timeout": 0.001})
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[policy])
    await target.start()
    try:
        gw, plan = await plan_for(target)
        await lifecycle.define(gw, plan, await lifecycle.create_overlay(gw, plan, target.volumes))
        await lifecycle.start(gw, plan)
        [report] = await target.reconcile()
        assert report.rolled_back == [plan.name]
        assert await state(gw) == BASELINE
    finally:
        await target.close()


async def test_running_creating_within_timeout_is_adopted(tmp_path: pathlib.Path) -> None:
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[web_policy()])
    await target.start()
    try:
        gw, plan = await plan_for(target)
        await lifecycle.define(gw, plan, await lifecycle.create_overlay(gw, plan, target.volumes))
        await lifecycle.start(gw, plan)
        [report] = await target.reconcile()
        assert report.rolled_back == []
        assert [i.name for i in (await target.inventory("web")).instances] == [plan.name]
    finally:
        await target.close()


async def test_draining_is_finished(tmp_path: pathlib.Path) -> None:
    # A long warm-up in the governed policy keeps the readiness watch from promoting the clone
    # to active meanwhile: the phase is written behind the cache's back here, as a crashed
    # process would have left it.
    policy = web_policy(warmup=3600.0)
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[policy])
    await target.start()
    try:
        record = await new_member(target, policy)
        gw = target.gateway(target.hosts[0])
        await lifecycle.set_phase(gw, record.uuid, record.owner.with_phase(xml.Phase.DRAINING))
        await target.reconcile()  # picks the phase up from libvirt ...
        assert await state(gw) == BASELINE  # ... and finishes the destroy
    finally:
        await target.close()


async def test_undefined_but_overlay_left_is_swept(target: kvm.KvmTarget) -> None:
    record = await new_member(target)
    gw = target.gateway(target.hosts[0])
    await gw.run(ops.destroy, record.uuid, op="destroy")
    await gw.run(ops.undefine, record.uuid, op="undefine")

    [report] = await target.reconcile()

    assert report.orphan_overlays == [xml.overlay_name("web", record.uuid)]
    assert await state(gw) == BASELINE
    assert (await target.inventory("web")).instances == ()


async def test_active_members_are_adopted_after_restart_of_cache(target: kvm.KvmTarget) -> None:
    done = (await target.scale_out(web_policy(), 2)).done
    target._cache.replace_host(target.hosts[0], [])  # a fresh process knows nothing ...
    await target.reconcile()  # ... until it reconciles
    inventory = await target.inventory("web")
    assert sorted(i.name for i in inventory.instances) == sorted(done)
    assert all(i.state is not model.InstanceState.FAILED for i in inventory.instances)


async def test_member_whose_overlay_is_gone_is_destroyed_and_reported(target: kvm.KvmTarget) -> None:
    lost, kept = (await target.scale_out(web_policy(), 2)).done
    record = target._cache.find("web", lost)
    assert record is not None
    gw = target.gateway(target.hosts[0])
    await gw.run(ops.delete_volume, "default", xml.overlay_name("web", record.uuid), op="vol_delete")

    [report] = await target.reconcile()

    assert report.missing_overlay == [lost]
    names, _vols = await state(gw)
    assert lost not in names
    assert kept in names
    assert [i.name for i in (await target.inventory("web")).instances] == [kept]


async def test_overlay_in_an_inactive_pool_proves_nothing(target: kvm.KvmTarget) -> None:
    name = (await target.scale_out(web_policy(), 1)).done[0]
    gw = target.gateway(target.hosts[0])
    await gw.run(lambda conn: conn.storagePoolLookupByName("default").destroy(), op="pool_stop")

    [report] = await target.reconcile()

    assert report.missing_overlay == []
    assert name in (await state_names(gw))


async def state_names(gw: gateway.Gateway) -> set[str]:
    return {v.name for v in await gw.run(ops.list_domains, op="list")}


async def test_domains_of_groups_without_policy_are_counted_and_left_alone(target: kvm.KvmTarget) -> None:
    done = (await target.scale_out(web_policy(), 2)).done
    gw = target.gateway(target.hosts[0])
    target.set_policies([])

    [report] = await target.reconcile()

    assert report.unmanaged == {"web": 2}
    assert target.unmanaged() == {"web": 2}
    assert set(done) <= await state_names(gw)
    target.set_policies([web_policy()])
    assert target.unmanaged() == {}


async def test_changes_made_while_a_host_is_listed_win_over_the_listing(
    target: kvm.KvmTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    [old] = (await target.scale_out(web_policy(), 1)).done
    await eventually(lambda: all(r.owner.ready for r in target._cache.group("web")))
    listed, release = threading.Event(), threading.Event()
    list_domains = ops.list_domains

    def held_listing(conn: Any) -> list[ops.DomainView]:
        views = list_domains(conn)
        listed.set()
        release.wait(10.0)  # the listing is read; it reaches the cache only once released
        return views

    monkeypatch.setattr(ops, "list_domains", held_listing)
    reconciling = asyncio.create_task(target.reconcile())
    try:
        assert await asyncio.to_thread(listed.wait, 5.0)
        monkeypatch.setattr(ops, "list_domains", list_domains)
        [new] = (await target.scale_out(web_policy(), 1)).done  # cloned after the listing ...
        await target.scale_in(web_policy(), [old])  # ... and removed after it
    finally:
        release.set()
    await reconciling

    assert [i.name for i in (await target.inventory("web")).instances] == [new]
    assert await state_names(target.gateway(target.hosts[0])) == {"web-template", "as-web-deadbeef", new}


async def test_an_overlay_of_another_hosts_domain_in_a_shared_pool_is_kept(tmp_path: pathlib.Path) -> None:
    first, second = host_uri(tmp_path, "h1"), host_uri(tmp_path, "h2")
    target = kvm.KvmTarget([first, second], settings=fast_settings(), policies=[web_policy()])
    await target.start()
    try:
        await target.scale_out(web_policy(), 2)
        [elsewhere] = [r for r in target._cache.members("web") if r.host == second]
        gw = target.gateway(first)
        golden = await target._golden(gw, web_policy())
        shared = xml.overlay_name("web", elsewhere.uuid)  # the shared pool, as the first host sees it
        orphan = xml.overlay_name("web", "0dd0dd00-0000-4000-8000-000000000001")
        for name, owner in ((shared, elsewhere.uuid), (orphan, "0dd0dd00-0000-4000-8000-000000000001")):
            volume = xml.volume_xml(name, golden.capacity, golden.path, golden.format)
            await target.volumes.create(gw, "default", name, volume, "overlay", owner)

        reports = await target.reconcile()

        assert reports[0].orphan_overlays == [orphan]
        _names, vols = await state(gw)
        assert shared in vols
    finally:
        await target.close()


async def test_a_promotion_made_while_a_host_is_listed_is_kept(tmp_path: pathlib.Path) -> None:
    policy = web_policy(readiness={"probe": "channel", "interval": 0.02})  # never answers on its own
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[policy])
    await target.start()
    try:
        [name] = (await target.scale_out(policy, 1)).done
        listed, release = threading.Event(), threading.Event()
        list_domains = ops.list_domains

        def held_listing(conn: Any) -> list[ops.DomainView]:
            views = list_domains(conn)  # the member is listed while still creating
            listed.set()
            release.wait(10.0)
            return views

        ops_list = pytest.MonkeyPatch()
        ops_list.setattr(ops, "list_domains", held_listing)
        reconciling = asyncio.create_task(target.reconcile())
        try:
            assert await asyncio.to_thread(listed.wait, 5.0)
            ops_list.undo()
            target.set_policies([web_policy(readiness={"interval": 0.02})])  # now the probe answers
            await eventually(lambda: (target._cache.find("web", name) or _gone()).owner.ready is not None)
        finally:
            release.set()
            ops_list.undo()
        await reconciling

        record = target._cache.find("web", name)
        assert record is not None
        assert record.owner.phase is xml.Phase.ACTIVE  # the older listing did not undo the promotion
    finally:
        await target.close()


def _gone() -> Any:
    raise AssertionError("member vanished")
