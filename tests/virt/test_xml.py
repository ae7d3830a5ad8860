"""Clone XML rules: new identity, no copied MACs, explicit backing chain, our metadata."""

from __future__ import annotations

import pathlib

from autoscaler.virt import xml

TEMPLATE = (pathlib.Path(__file__).parent.parent / "fixtures" / "libvirt" / "host.xml").read_text()


def template() -> str:
    start = TEMPLATE.index("<domain type='kvm'>")
    return TEMPLATE[start : TEMPLATE.index("</domain>", start) + len("</domain>")]


OWNER = xml.Ownership("web", "golden-web.qcow2", "abc", 1700000000.5, xml.Phase.CREATING, "test:///h")
SPEC = xml.CloneSpec(
    "as-web-12345678", "12345678-aaaa-4bbb-8ccc-dddddddddddd", "/p/o.qcow2", "/p/g.qcow2", "qcow2", OWNER
)


def test_clone_has_new_identity_and_no_mac() -> None:
    root = xml.parse(xml.clone_domain_xml(template(), SPEC))
    assert root.findtext("name") == SPEC.name
    assert root.findtext("uuid") == SPEC.uuid
    assert root.find("devices/interface/mac") is None
    assert root.findtext("on_poweroff") == "destroy"


def test_disk_points_at_overlay_with_explicit_backing_format() -> None:
    disk = xml.parse(xml.clone_domain_xml(template(), SPEC)).find("devices/disk")
    assert disk is not None
    assert disk.find("source").get("file") == "/p/o.qcow2"  # type: ignore[union-attr]
    assert disk.find("backingStore/format").get("type") == "qcow2"  # type: ignore[union-attr]
    assert disk.find("backingStore/source").get("file") == "/p/g.qcow2"  # type: ignore[union-attr]
    assert disk.find("backingStore/backingStore") is not None


def test_metadata_round_trips_in_our_namespace() -> None:
    root = xml.parse(xml.clone_domain_xml(template(), SPEC))
    element = root.find(f"metadata/{{{xml.NAMESPACE}}}instance")
    assert element is not None
    assert xml.parse_metadata(xml.metadata_xml(OWNER)) == OWNER
    ready = OWNER.with_phase(xml.Phase.ACTIVE, ready=1700000010.0)
    assert xml.parse_metadata(xml.metadata_xml(ready)) == ready


def test_malformed_metadata_is_not_ours() -> None:
    assert xml.parse_metadata("<instance><group>web</group></instance>") is None


def test_volume_names_the_backing_format() -> None:
    volume = xml.parse(xml.volume_xml("as-web-x.qcow2", 1024, "/p/g.qcow2", "raw"))
    assert volume.find("backingStore/format").get("type") == "raw"  # type: ignore[union-attr]
    assert volume.find("target/format").get("type") == "qcow2"  # type: ignore[union-attr]


def test_overlay_name_pattern_matches_only_full_uuids() -> None:
    assert xml.OVERLAY_NAME.match(xml.overlay_name("web", SPEC.uuid))
    assert not xml.OVERLAY_NAME.match("as-web-12345678.qcow2")


def test_channel_state_and_memory() -> None:
    target = "<target type='virtio' name='org.x' state='connected'/>"
    live = f"<domain><devices><channel>{target}</channel></devices></domain>"
    assert xml.channel_connected(live, "org.x")
    assert not xml.channel_connected(live.replace("connected", "disconnected"), "org.x")
    assert xml.memory_bytes(template()) == 512 * 1024 * 1024
