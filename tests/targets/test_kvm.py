"""KvmTarget against libvirt's test driver: clones, ownership, placement, admission and reconcile."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import pytest

from autoscaler import errors, model
from autoscaler.targets import kvm, lifecycle, watch
from autoscaler.virt import ops, xml
from tests.targets.hosts import (
    MiB,
    RecordingObserver,
    eventually,
    fast_settings,
    host_uri,
    new_member,
    shutdown_like_qemu,
    web_policy,
)

FOREIGN = "as-web-deadbeef"
FOREIGN_UUID = "deadbeef-0000-4000-8000-000000000001"


@pytest.fixture
async def target(tmp_path: pathlib.Path) -> AsyncIterator[kvm.KvmTarget]:
    started = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[web_policy()])
    await started.start()
    yield started
    await started.close()


async def domains(target: kvm.KvmTarget, uri: str | None = None) -> dict[str, ops.DomainView]:
    gw = target.gateway(uri or target.hosts[0])
    return {view.name: view for view in await gw.run(ops.list_domains, op="list")}


async def volumes(target: kvm.KvmTarget, uri: str | None = None) -> set[str]:
    gw = target.gateway(uri or target.hosts[0])
    return {v.name for v in await gw.run(ops.list_volumes, "default", op="vol_list")}


async def test_scale_out_clones_with_metadata_and_becomes_ready(target: kvm.KvmTarget) -> None:
    result = await target.scale_out(web_policy(), 2)

    assert len(result.done) == 2
    assert result.failed == 0
    seen = await domains(target)
    for name in result.done:
        owner = xml.parse_metadata(seen[name].metadata or "")
        assert owner is not None
        assert owner.group == "web"
        assert seen[name].run == "running"
        assert f"{xml.overlay_name('web', seen[name].uuid)}" in await volumes(target)
    await eventually(lambda: all(r.owner.ready for r in target._cache.group("web")))
    inventory = await target.inventory("web")
    assert target.provision_seconds("web") is not None
    assert {i.name for i in inventory.instances} == set(result.done)
    assert all(i.state is model.InstanceState.READY for i in inventory.instances)
    created = {n: xml.parse_metadata((await domains(target))[n].metadata or "") for n in result.done}
    assert {i.created_at for i in inventory.instances} == {o.created for o in created.values() if o}
    assert all(o is not None and o.phase is xml.Phase.ACTIVE for o in created.values())


async def test_scale_in_removes_domain_and_overlay(target: kvm.KvmTarget) -> None:
    done = (await target.scale_out(web_policy(), 2)).done

    result = await target.scale_in(web_policy(), [done[0]])

    assert result.done == (done[0],)
    seen = await domains(target)
    assert done[0] not in seen
    assert done[1] in seen
    assert not any(v.startswith(f"as-web-{done[0][7:]}") for v in await volumes(target))
    assert [i.name for i in (await target.inventory("web")).instances] == [done[1]]


async def test_foreign_look_alike_is_never_touched(target: kvm.KvmTarget) -> None:
    result = await target.scale_in(web_policy(), [FOREIGN, "web-template"])
    await target.reconcile()

    assert result.done == ()
    assert result.failed == 2
    seen = await domains(target)
    assert seen[FOREIGN].run == "running"
    assert seen["web-template"].run == "running"
    assert (await target.inventory("web")).instances == ()


async def test_generated_name_taken_by_foreign_domain_gets_new_uuid(tmp_path: pathlib.Path) -> None:
    uuids = iter([FOREIGN_UUID.replace("0000-4000-8000-000000000001", "1111-4111-8111-111111111111"), None])
    fresh = "0badcafe-2222-4222-8222-222222222222"
    target = kvm.KvmTarget(
        host_uri(tmp_path), settings=fast_settings(), new_uuid=lambda: next(uuids) or fresh
    )
    await target.start()
    try:
        result = await target.scale_out(web_policy(), 1)
        seen = await domains(target)
        assert result.done == ("as-web-0badcafe",)
        assert seen[FOREIGN].uuid == FOREIGN_UUID
        assert seen[FOREIGN].metadata is None
        left = await volumes(target)
        assert left == {"golden-web.qcow2", xml.overlay_name("web", fresh)}
    finally:
        await target.close()


async def test_destroy_is_idempotent(target: kvm.KvmTarget) -> None:
    record = await new_member(target)
    gw = target.gateway(target.hosts[0])
    stop = lifecycle.StopTimings(shutdown_timeout=1.0, poll_interval=0.01)

    for _ in range(3):
        await lifecycle.destroy(gw, record, stop, "default", target.volumes)

    assert record.name not in await domains(target)
    assert await volumes(target) == {"golden-web.qcow2"}


async def test_places_on_host_with_most_free_memory_and_spreads(tmp_path: pathlib.Path) -> None:
    small, large = host_uri(tmp_path, "small", 2048), host_uri(tmp_path, "large", 4096)
    target = kvm.KvmTarget([small, large], settings=fast_settings())
    await target.start()
    try:
        first = await target.scale_out(web_policy(), 1)
        assert first.done[0] in await domains(target, large)
        await target.scale_out(web_policy(), 4)
        hosts = [i.host for i in (await target.inventory("web")).instances]
        assert hosts.count(small) >= 1
        assert hosts.count(large) >= 3
    finally:
        await target.close()


async def test_admission_refuses_when_memory_plus_reserve_is_short(tmp_path: pathlib.Path) -> None:
    observer = RecordingObserver()
    # 2048 MiB host: template 512 + foreign 256 run already -> 1280 free; reserve 512 -> room for 1.
    uri = host_uri(tmp_path, "tight", 2048)
    target = kvm.KvmTarget(uri, settings=fast_settings(memory_reserve=512 * MiB), observer=observer)
    await target.start()
    try:
        result = await target.scale_out(web_policy(), 3)
        assert len(result.done) == 1
        assert result.failed == 2
        assert observer.refused == ["web", "web"]
        assert (await target.inventory("web")).headroom == 0
        with pytest.raises(errors.CapacityLimited):
            await target.scale_out(web_policy(), 1)
        assert len(observer.refused) == 3
    finally:
        await target.close()


async def test_headroom_counts_instances_that_fit(target: kvm.KvmTarget) -> None:
    await target.scale_out(web_policy(), 1)
    # 4096 - 512 template - 256 foreign - 512 clone = 2816 free; minus 256 reserve -> 5 of 512.
    assert (await target.inventory("web")).headroom == 5


async def test_unasked_shutoff_reports_failed(target: kvm.KvmTarget) -> None:
    name = (await target.scale_out(web_policy(), 1)).done[0]
    gw = target.gateway(target.hosts[0])
    view = (await domains(target))[name]

    await gw.run(ops.destroy, view.uuid, op="destroy")

    await eventually(lambda: target._cache.find("web", name).run == "shutoff")  # type: ignore[union-attr]
    assert (await target.inventory("web")).instances[0].state is model.InstanceState.FAILED


async def test_channel_probe_keeps_instance_booting(tmp_path: pathlib.Path) -> None:
    policy = web_policy(readiness={"probe": "channel", "interval": 0.05})
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[policy])
    await target.start()
    try:
        await target.scale_out(policy, 1)
        await eventually(lambda: target._cache.group("web")[0].last_probe > 0)
        assert (await target.inventory("web")).instances[0].state is model.InstanceState.BOOTING
        assert target.provision_seconds("web") is None
    finally:
        await target.close()


async def test_template_from_file(tmp_path: pathlib.Path) -> None:
    template = tmp_path / "web.xml"
    template.write_text(
        "<domain type='kvm'><name>t</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>"
        "<source file='/var/lib/autoscaler-test/golden-web.qcow2'/><target dev='vda' bus='virtio'/>"
        "</disk></devices></domain>"
    )
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings())
    await target.start()
    try:
        result = await target.scale_out(web_policy(template=str(template)), 1)
        assert (await domains(target))[result.done[0]].memory == 128 * MiB
    finally:
        await target.close()


async def test_missing_golden_is_permanent(target: kvm.KvmTarget) -> None:
    with pytest.raises(errors.TargetPermanent):
        await target.scale_out(web_policy(golden="golden-nope.qcow2"), 1)
    assert (await target.inventory("web")).instances == ()


async def test_ready_flag_follows_reconcile(tmp_path: pathlib.Path) -> None:
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings())
    assert not target.ready_for("web")
    await target.start()
    try:
        assert target.ready_for("web")
    finally:
        await target.close()


async def test_a_dead_background_task_breaks_the_upkeep(
    target: kvm.KvmTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(state: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(watch, "watch_readiness", broken)  # a bug in the readiness watch

    with pytest.raises(errors.UpkeepFailed, match=r"libvirt-maintenance: RuntimeError: injected"):
        await asyncio.wait_for(target.upkeep(), 5)


async def test_close_does_not_read_as_a_broken_upkeep(tmp_path: pathlib.Path) -> None:
    started = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[web_policy()])
    await started.start()
    await started.close()  # cancels the background tasks; their ends are handled before it returns
    assert not started._state.upkeep_broken.is_set()


async def test_members_of_a_golden_image_no_longer_named_are_outdated(target: kvm.KvmTarget) -> None:
    await target.scale_out(web_policy(), 1)
    assert [i.outdated for i in (await target.inventory("web")).instances] == [False]

    target.set_policies([web_policy(golden="golden-web-v2.qcow2")])

    assert [i.outdated for i in (await target.inventory("web")).instances] == [True]


async def test_a_paused_member_is_removed_without_waiting_for_a_shutdown(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutdown_like_qemu(monkeypatch)
    settings = fast_settings(stop=lifecycle.StopTimings(shutdown_timeout=30.0, poll_interval=0.02))
    target = kvm.KvmTarget(host_uri(tmp_path), settings=settings, policies=[web_policy()])
    await target.start()
    try:
        [name] = (await target.scale_out(web_policy(), 1)).done
        await target.gateway(target.hosts[0]).run(
            ops.suspend, (await domains(target))[name].uuid, op="suspend"
        )

        result = await asyncio.wait_for(target.scale_in(web_policy(), [name]), 5.0)  # not 30 s

        assert result.done == (name,)
        assert name not in await domains(target)
    finally:
        await target.close()


async def test_concurrent_scale_outs_never_share_the_same_free_memory(tmp_path: pathlib.Path) -> None:
    # 4096 - 512 template - 256 foreign = 3328 MiB free; a 2716 MiB reserve leaves room for one clone.
    web, api = web_policy(), web_policy(group="api")
    settings = fast_settings(memory_reserve=2716 * MiB)
    target = kvm.KvmTarget(host_uri(tmp_path), settings=settings, policies=[web, api])
    await target.start()
    try:
        outcomes = await asyncio.gather(
            target.scale_out(web, 1), target.scale_out(api, 1), return_exceptions=True
        )

        done = [o for o in outcomes if isinstance(o, model.ScaleResult) and o.done]
        refused = [o for o in outcomes if isinstance(o, errors.CapacityLimited)]
        assert (len(done), len(refused)) == (1, 1)
        assert target._state.free[target.hosts[0]] >= settings.memory_reserve
        assert not +target._state.reserved
    finally:
        await target.close()


async def test_a_paused_member_does_not_freeze_the_groups_reading_time(target: kvm.KvmTarget) -> None:
    first, _second = (await target.scale_out(web_policy(), 2)).done
    await eventually(lambda: all(r.owner.phase is xml.Phase.ACTIVE for r in target._cache.group("web")))
    async with asyncio.timeout(5):
        while not all(r.load_at is not None for r in target._cache.group("web")):
            await target.refresh_load("web")  # two readings each give every member a load
    paused = target._cache.find("web", first)
    assert paused is not None
    await target.gateway(target.hosts[0]).run(ops.suspend, paused.uuid, op="suspend")
    await eventually(lambda: paused.run == "paused" or target._cache.find("web", first) is not paused)
    before = await target.refresh_load("web")
    assert before is not None

    await eventually_reading_after(target, before)
    now_paused = target._cache.find("web", first)
    assert now_paused is not None
    assert now_paused.load is None  # its last load, from before the pause, is not lent to the group


async def eventually_reading_after(target: kvm.KvmTarget, before: float, deadline: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + deadline
    while (now := await target.refresh_load("web")) is None or now <= before:
        assert asyncio.get_running_loop().time() < end, "the reading time stopped moving"
        await asyncio.sleep(0.01)


async def test_a_boot_once_pool_is_admitted_like_a_paused_one(tmp_path: pathlib.Path) -> None:
    # 2048 MiB host: 512 template + 256 foreign leave 1280 free; with a 512 reserve one 512 clone fits.
    policy = web_policy(
        warm_pool={"size": 4, "state": "shutoff", "boot_once": True},
        readiness={"probe": "channel", "interval": 0.05},  # never answers: the clones keep running
    )
    target = kvm.KvmTarget(
        host_uri(tmp_path, memory_mib=2048),
        settings=fast_settings(memory_reserve=512 * MiB),
        policies=[policy],
    )
    await target.start()
    try:
        await eventually(lambda: len(target._cache.pooled("web")) == 1)
        assert await target.fill_pools() == 0  # a refill round finds no room for a second one
        assert len(target._cache.pooled("web")) == 1
    finally:
        await target.close()


async def test_each_clone_and_each_removal_is_timed_for_the_metrics(tmp_path: pathlib.Path) -> None:
    observer = RecordingObserver()
    target = kvm.KvmTarget(
        host_uri(tmp_path), settings=fast_settings(), observer=observer, policies=[web_policy()]
    )
    await target.start()
    try:
        done = (await target.scale_out(web_policy(), 2)).done
        assert observer.clones == ["web", "web"]
        await target.scale_in(web_policy(), [done[0]])
        assert observer.removals == ["web"]
    finally:
        await target.close()
