"""Seeds on libvirt's test driver: the domain XML carries them, and the driver's missing upload is a
clear capability error that leaves nothing behind (the real upload is proven against libvirtd in
tests/integration/test_identity.py)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from autoscaler import errors
from autoscaler.policy import spec
from autoscaler.targets import kvm
from autoscaler.virt import ops, xml
from tests.targets.hosts import fast_settings, host_uri, web_policy

TEMPLATE = """<domain type='kvm'><name>t</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/g.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""
OWNER = xml.Ownership("web", "g", "r1", 1.0, xml.Phase.CREATING)
UUID = "0123abcd-1111-4222-8333-444455556666"


def identity_policy() -> spec.GroupPolicy:
    return web_policy(instance=spec.Instance(user_data_text="#cloud-config\n"))


@pytest.fixture
async def target(tmp_path: pathlib.Path) -> AsyncIterator[kvm.KvmTarget]:
    started = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[identity_policy()])
    await started.start()
    yield started
    await started.close()


def test_the_clone_xml_attaches_the_seed_read_only_and_writes_the_serial() -> None:
    seed = xml.SeedDisk("default", xml.seed_name("web", UUID))
    clone = xml.CloneSpec(
        "as-web-0123abcd", UUID, "/o.qcow2", "/g.qcow2", "qcow2", OWNER, seed, "ds=nocloud;i=x;h=y"
    )
    root = xml.parse(xml.clone_domain_xml(TEMPLATE, clone))
    [disk] = [d for d in root.findall("devices/disk") if d.get("type") == "volume"]
    assert disk.find("source").attrib == {"pool": "default", "volume": f"as-web-{UUID}.seed.iso"}  # type: ignore[union-attr]
    assert disk.find("target").attrib == {"dev": "vdb", "bus": "virtio"}  # type: ignore[union-attr]
    assert disk.find("readonly") is not None
    assert root.find("os/smbios").attrib == {"mode": "sysinfo"}  # type: ignore[union-attr]
    assert root.findtext("sysinfo[@type='smbios']/system/entry[@name='serial']") == "ds=nocloud;i=x;h=y"
    assert xml.seed_disks(xml.serialize(root)) == [seed]


def test_without_an_identity_the_clone_xml_is_unchanged() -> None:
    clone = xml.CloneSpec("as-web-0123abcd", UUID, "/o.qcow2", "/g.qcow2", "qcow2", OWNER)
    root = xml.parse(xml.clone_domain_xml(TEMPLATE, clone))
    assert root.find("sysinfo") is None
    assert root.find("os/smbios") is None
    assert len(root.findall("devices/disk")) == 1


async def test_the_test_driver_cannot_upload_and_says_so(target: kvm.KvmTarget) -> None:
    gw = target.gateway(target.hosts[0])
    before = {v.name for v in await gw.run(ops.list_volumes, "default", op="vol_list")}

    with pytest.raises(errors.TargetPermanent, match="does not support volume upload"):
        await target.scale_out(identity_policy(), 1)

    assert not (await target.inventory("web")).instances
    after = {v.name for v in await gw.run(ops.list_volumes, "default", op="vol_list")}
    assert after == before  # neither the seed volume nor the overlay stayed behind


def test_an_unrenderable_hostname_is_a_permanent_error() -> None:
    from autoscaler.targets import seeds

    with pytest.raises(errors.TargetPermanent, match="not a valid host name"):
        seeds.plan(spec.Instance(hostname="${host}"), "as-web-1", UUID, "web", "qemu+ssh://KVM_1/system")


async def test_a_seed_we_recorded_whose_domain_is_gone_is_swept_and_a_lookalike_kept(
    target: kvm.KvmTarget,
) -> None:
    gw = target.gateway(target.hosts[0])
    crashed, foreign = UUID, "0123abcd-9999-4222-8333-444455556666"
    ours, lookalike = xml.seed_name("web", crashed), xml.seed_name("web", foreign)
    await target.volumes.ledger.intend(gw.uri, "default", ours, "seed", crashed)
    for name in (ours, lookalike):  # a crash after the upload, before the define
        await gw.run(ops.create_volume, "default", xml.seed_volume_xml(name, 69632), op="vol_create")

    [report] = await target.reconcile()

    names = {v.name for v in await gw.run(ops.list_volumes, "default", op="vol_list")}
    assert ours not in names
    assert lookalike in names
    assert ours in report.orphan_overlays
    assert lookalike in report.lookalikes
    assert await target.volumes.ledger.entries(gw.uri) == []
