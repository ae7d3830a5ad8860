"""Only volumes the ledger says we created, and no domain uses, are ever deleted (test:/// hosts).

Foreign volumes are named exactly like our overlays (`as-web-<uuid>.qcow2`, with a backing
file, past every grace period); foreign domains, running or not, use some of them as disks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import time
import uuid as uuidlib
from collections.abc import AsyncIterator

import pytest

from autoscaler import errors
from autoscaler.targets import kvm, ownership
from autoscaler.virt import gateway, ops, xml
from tests.targets.hosts import RecordingObserver, fast_settings, host_uri, new_member, web_policy

POOL_DIR = "/var/lib/autoscaler-test"


def lookalike_name(uid: str | None = None) -> str:
    return xml.overlay_name("web", uid or str(uuidlib.uuid4()))


def foreign_domain(name: str, disk: str, running: bool | None = None) -> str:
    """A domain without our metadata that uses `disk`; a run state (1 running, 5 shut off) is for
    a domain in the host file (None: for a define, which rejects it)."""
    return f"""
  <domain type='kvm' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{name}</name><uuid>{uuidlib.uuid4()}</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>
    <os><type arch='x86_64'>hvm</type></os>
    <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{POOL_DIR}/{disk}'/><target dev='vda' bus='virtio'/></disk></devices>
    {"" if running is None else f"<test:runstate>{1 if running else 5}</test:runstate>"}
  </domain>"""


def with_volumes(uri: str, names: list[str]) -> str:
    """The host file of a test:/// URI with more volumes in its pool (backed by the golden image):
    they are there again for every new connection, as files on disk are for a new process."""
    path = pathlib.Path(uri.removeprefix("test://"))
    volumes = "".join(
        f"""<volume type='file'><name>{name}</name><capacity unit='GiB'>1</capacity>
        <target><path>{POOL_DIR}/{name}</path><format type='qcow2'/></target>
        <backingStore><path>{POOL_DIR}/golden-web.qcow2</path><format type='qcow2'/></backingStore>
        </volume>"""
        for name in names
    )
    path.write_text(path.read_text().replace("</pool>", volumes + "</pool>", 1))
    return uri


async def make_foreign_volume(gw: gateway.Gateway, name: str) -> None:
    golden = await gw.run(ops.golden, "default", "golden-web.qcow2", op="golden")
    volume = xml.volume_xml(name, golden.capacity, golden.path, golden.format)
    await gw.run(ops.create_volume, "default", volume, op="vol_create")


async def volume_names(gw: gateway.Gateway) -> set[str]:
    return {v.name for v in await gw.run(ops.list_volumes, "default", op="vol_list")}


@pytest.fixture
def ledger_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "state" / "volumes"


def new_target(
    uri: str, ledger_dir: pathlib.Path, observer: RecordingObserver | None = None
) -> kvm.KvmTarget:
    return kvm.KvmTarget(
        uri,
        settings=fast_settings(),
        policies=[web_policy()],
        ledger=ownership.FileLedger(ledger_dir),
        observer=observer,
    )


@pytest.fixture
async def target(tmp_path: pathlib.Path, ledger_dir: pathlib.Path) -> AsyncIterator[kvm.KvmTarget]:
    started = new_target(host_uri(tmp_path), ledger_dir)
    await started.start()
    yield started
    await started.close()


async def test_a_detached_lookalike_is_left_alone_and_reported(
    tmp_path: pathlib.Path, ledger_dir: pathlib.Path
) -> None:
    observer = RecordingObserver()
    target = new_target(host_uri(tmp_path), ledger_dir, observer)
    await target.start()
    try:
        gw = target.gateway(target.hosts[0])
        name = lookalike_name()
        await make_foreign_volume(gw, name)

        [report] = await target.reconcile()

        assert report.orphan_overlays == []
        assert report.lookalikes == [name]
        assert name in await volume_names(gw)
        assert observer.lookalikes == {gw.uri: 1}
    finally:
        await target.close()


@pytest.mark.parametrize("running", [True, False])
async def test_a_lookalike_used_by_a_foreign_domain_survives_everything(
    tmp_path: pathlib.Path, ledger_dir: pathlib.Path, running: bool
) -> None:
    disk = lookalike_name("deadbeef-0000-4000-8000-000000000001")  # even our-shaped and of a look-alike name
    uri = with_volumes(host_uri(tmp_path, domains=[foreign_domain("as-flt-deadbeef", disk, running)]), [disk])
    target = new_target(uri, ledger_dir)
    await target.start()
    try:
        members = (await target.scale_out(web_policy(), 2)).done
        await target.scale_in(web_policy(), members)
        await target.reconcile()
        await target.close()
        target = new_target(uri, ledger_dir)  # a restart: a new process over the same state
        await target.start()
        await target.reconcile()
        assert disk in await volume_names(target.gateway(target.hosts[0]))
        view = await target.gateway(target.hosts[0]).run(ops.find_by_name, "as-flt-deadbeef", op="lookup")
        assert view.run == ("running" if running else "shutoff")
    finally:
        await target.close()


async def test_a_volume_we_created_but_a_foreign_domain_uses_is_kept(target: kvm.KvmTarget) -> None:
    gw = target.gateway(target.hosts[0])
    golden = await gw.run(ops.golden, "default", "golden-web.qcow2", op="golden")
    name = lookalike_name()
    volume = xml.volume_xml(name, golden.capacity, golden.path, golden.format)
    await target.volumes.create(gw, "default", name, volume, "overlay", str(uuidlib.uuid4()))
    await gw.run(ops.define, foreign_domain("foreign-user", name), op="define")

    [report] = await target.reconcile()

    assert report.orphan_overlays == []
    assert report.lookalikes == [name]
    assert name in await volume_names(gw)


async def test_an_overlay_we_created_whose_domain_is_gone_is_deleted_and_forgotten(
    target: kvm.KvmTarget,
) -> None:
    record = await new_member(target)
    gw = target.gateway(target.hosts[0])
    await gw.run(ops.destroy, record.uuid, op="destroy")
    await gw.run(ops.undefine, record.uuid, op="undefine")
    overlay = xml.overlay_name("web", record.uuid)
    assert await target.volumes.ledger.owns(gw.uri, "default", overlay) is not None

    [report] = await target.reconcile()

    assert report.orphan_overlays == [overlay]
    assert overlay not in await volume_names(gw)
    assert await target.volumes.ledger.owns(gw.uri, "default", overlay) is None


async def test_scale_in_deletes_our_overlay_and_its_record(target: kvm.KvmTarget) -> None:
    record = await new_member(target)
    gw = target.gateway(target.hosts[0])
    overlay = xml.overlay_name("web", record.uuid)

    result = await target.scale_in(web_policy(), [record.name])

    assert result.done == (record.name,)
    assert overlay not in await volume_names(gw)
    assert await target.volumes.ledger.entries(gw.uri) == []


async def test_scale_in_keeps_our_overlay_when_a_foreign_domain_also_uses_it(target: kvm.KvmTarget) -> None:
    record = await new_member(target)
    gw = target.gateway(target.hosts[0])
    overlay = xml.overlay_name("web", record.uuid)
    await gw.run(ops.define, foreign_domain("foreign-sharer", overlay), op="define")

    await target.scale_in(web_policy(), [record.name])

    assert overlay in await volume_names(gw)


async def test_a_restart_sweeps_what_the_previous_process_created(
    tmp_path: pathlib.Path, ledger_dir: pathlib.Path
) -> None:
    crashed = str(uuidlib.uuid4())  # the previous process died after the overlay, before the define
    overlay, lookalike = xml.overlay_name("web", crashed), lookalike_name()
    uri = with_volumes(host_uri(tmp_path), [overlay, lookalike])
    await ownership.FileLedger(ledger_dir).intend(uri, "default", overlay, "overlay", crashed)
    target = new_target(uri, ledger_dir)

    await target.start()  # its first reconcile
    try:
        assert await volume_names(target.gateway(uri)) == {"golden-web.qcow2", lookalike}
        assert await target.volumes.ledger.entries(uri) == []
    finally:
        await target.close()


async def test_an_intent_whose_volume_never_appeared_is_pruned(target: kvm.KvmTarget) -> None:
    gw = target.gateway(target.hosts[0])
    await target.volumes.ledger.intend(gw.uri, "default", lookalike_name(), "overlay", str(uuidlib.uuid4()))

    await target.reconcile()

    assert await target.volumes.ledger.entries(gw.uri) == []


async def test_a_name_taken_by_a_foreign_volume_is_never_recorded_as_ours(target: kvm.KvmTarget) -> None:
    gw = target.gateway(target.hosts[0])
    name = lookalike_name()
    await make_foreign_volume(gw, name)
    golden = await gw.run(ops.golden, "default", "golden-web.qcow2", op="golden")
    volume = xml.volume_xml(name, golden.capacity, golden.path, golden.format)

    with pytest.raises(errors.Conflict):
        await target.volumes.create(gw, "default", name, volume, "overlay", str(uuidlib.uuid4()))

    assert await target.volumes.ledger.owns(gw.uri, "default", name) is None
    [report] = await target.reconcile()
    assert name in await volume_names(gw)
    assert report.lookalikes == [name]


async def test_the_file_ledger_survives_a_new_instance_and_ignores_a_broken_record(
    ledger_dir: pathlib.Path,
) -> None:
    first = ownership.FileLedger(ledger_dir)
    await first.intend("qemu:///system", "p", "as-web-x.qcow2", "seed", "u-1")
    (ledger_dir / "garbage.json").write_text("{not json")
    (ledger_dir / "partial.json").write_text(json.dumps({"host": "h"}))

    second = ownership.FileLedger(ledger_dir)
    intent = await second.owns("qemu:///system", "p", "as-web-x.qcow2")

    assert intent is not None
    assert (intent.kind, intent.domain_uuid) == ("seed", "u-1")
    await second.forget("qemu:///system", "p", "as-web-x.qcow2")
    assert await ownership.FileLedger(ledger_dir).entries("qemu:///system") == []


class RefuseOnce:
    """A fence (our own seam) that refuses one op once, as a leader whose proof ran out would."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.refused = 0

    async def admit(self, op: str, uri: str) -> float:
        if op == self.op and not self.refused:
            self.refused += 1
            raise errors.Fenced(f"{op} on {uri}: proof of leadership ran out")
        return time.monotonic() + 60.0


async def test_an_overlay_delete_cut_short_is_retried_without_waiting_for_the_sweep(
    tmp_path: pathlib.Path, ledger_dir: pathlib.Path
) -> None:
    fence = RefuseOnce("vol_delete")
    settings = fast_settings(grace=dataclasses.replace(fast_settings().grace, overlay=3600.0))
    target = kvm.KvmTarget(
        host_uri(tmp_path),
        settings=settings,
        policies=[web_policy()],
        ledger=ownership.FileLedger(ledger_dir),
        fence=fence,
    )
    await target.start()
    try:
        record = await new_member(target)
        gw = target.gateway(target.hosts[0])
        overlay = xml.overlay_name("web", record.uuid)

        with pytest.raises(errors.Fenced):  # the domain is undefined, its overlay's delete refused
            await target.scale_in(web_policy(), [record.name])

        assert fence.refused == 1
        for _ in range(200):  # the maintenance loop runs every 20 ms; the sweep's grace is an hour
            if overlay not in await volume_names(gw):
                break
            await asyncio.sleep(0.02)
        assert overlay not in await volume_names(gw)
        assert await target.volumes.ledger.entries(gw.uri) == []
    finally:
        await target.close()
