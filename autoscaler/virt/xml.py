"""Pure XML builders and readers for clones, so the cloning rules can be tested without libvirt.

The ownership metadata lives in a frozen namespace: it is the only proof that a domain is ours.
All XML parsed here comes from libvirt or from the operator's own template files.
"""

from __future__ import annotations

import dataclasses
import enum
import os.path
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

NAMESPACE = "https://kvm-autoscaler.example/ns/instance/1"
"""Ownership key of every domain we create. MUST never change once released."""
PREFIX = "kas"
NAME_PREFIX = "as-"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
OVERLAY_NAME = re.compile(rf"^as-(?P<group>[a-z0-9-]+)-(?P<uuid>{_UUID})\.qcow2$")
"""Overlay volumes we create: the group and the full domain UUID."""
SEED_NAME = re.compile(rf"^as-(?P<group>[a-z0-9-]+)-(?P<uuid>{_UUID})\.seed\.iso$")
"""cloud-init seed volumes we create: the group and the full domain UUID."""

ET.register_namespace(PREFIX, NAMESPACE)


class Phase(enum.StrEnum):
    """Where a clone is in its life, persisted in its metadata so a crash cannot lose it."""

    CREATING = "creating"
    REGISTERING = "registering"
    """Ready by its probe, joining the group's load balancers; not yet capacity."""
    ACTIVE = "active"
    DRAINING = "draining"
    POOLED = "pooled"
    """Pre-cloned and waiting in the group's warm pool (shut off or paused); not yet a member."""


@dataclass(frozen=True, slots=True)
class Ownership:
    """Our metadata on one domain."""

    group: str
    """The group the domain belongs to."""
    golden: str
    """The golden image it is linked to."""
    generation: str
    """The policy revision it was created under."""
    created: float
    """When the clone was requested (Unix seconds)."""
    phase: Phase
    """creating, active, draining or pooled."""
    host: str = ""
    """The libvirt URI of the host it was placed on."""
    ready: float | None = None
    """When it first became ready (Unix seconds), once it has."""
    since: float | None = None
    """When the registering or draining phase began (a restart resumes with this time)."""
    address: str = ""
    """The address the load balancers reach it at, once registration learned it."""
    hooks: tuple[str, ...] = ()
    """Lifecycle hooks completed for it, as 'event:hook' (each runs once)."""

    def with_phase(self, phase: Phase, ready: float | None = None, since: float | None = None) -> Ownership:
        """The same ownership in another phase (keeping `ready` and `since` unless new ones are given)."""
        return dataclasses.replace(
            self,
            phase=phase,
            ready=self.ready if ready is None else ready,
            since=self.since if since is None else since,
        )


def parse(text: str) -> ET.Element:
    """The root element of a trusted XML document."""
    return ET.fromstring(text)  # noqa: S314 (libvirt output or the operator's template)


def clone_name(group: str, uuid: str) -> str:
    """The domain name of a clone: a readable hint, never the ownership proof."""
    return f"{NAME_PREFIX}{group}-{uuid[:8]}"


def overlay_name(group: str, uuid: str) -> str:
    """The overlay volume name, carrying the full UUID so an orphan can be matched to its domain."""
    return f"{NAME_PREFIX}{group}-{uuid}.qcow2"


def seed_name(group: str, uuid: str) -> str:
    """The cloud-init seed volume name, carrying the full UUID like the overlay's."""
    return f"{NAME_PREFIX}{group}-{uuid}.seed.iso"


def seed_volume_xml(name: str, capacity: int) -> str:
    """A raw volume of exactly `capacity` bytes for an uploaded seed image."""
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", {"unit": "bytes"}).text = str(capacity)
    ET.SubElement(vol, "allocation", {"unit": "bytes"}).text = str(capacity)
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", {"type": "raw"})
    ET.SubElement(ET.SubElement(target, "permissions"), "mode").text = "0644"
    return ET.tostring(vol, encoding="unicode")


def metadata_xml(owner: Ownership) -> str:
    """The metadata element as `setMetadata` takes it: unqualified, libvirt adds our namespace."""
    return ET.tostring(_metadata_element(owner, ""), encoding="unicode")


def _metadata_element(owner: Ownership, namespace: str) -> ET.Element:
    """The ownership element, its tags qualified by `namespace` when one is given."""
    qualify = (lambda tag: f"{{{namespace}}}{tag}") if namespace else (lambda tag: tag)
    fields = {
        "group": owner.group,
        "golden": owner.golden,
        "generation": owner.generation,
        "created": f"{owner.created:.3f}",
        "phase": owner.phase.value,
        "host": owner.host,
    }
    if owner.ready is not None:
        fields["ready"] = f"{owner.ready:.3f}"
    if owner.since is not None:
        fields["since"] = f"{owner.since:.3f}"
    if owner.address:
        fields["address"] = owner.address
    if owner.hooks:
        fields["hooks"] = " ".join(owner.hooks)
    root = ET.Element(qualify("instance"))
    for tag, text in fields.items():
        ET.SubElement(root, qualify(tag)).text = text
    return root


def parse_metadata(text: str) -> Ownership | None:
    """Our ownership from a metadata element, or None when it is malformed (then it is not ours)."""
    root = parse(text)
    values = {_local(child.tag): (child.text or "") for child in root}
    try:
        return Ownership(
            group=values["group"],
            golden=values.get("golden", ""),
            generation=values.get("generation", ""),
            created=float(values["created"]),
            phase=Phase(values["phase"]),
            host=values.get("host", ""),
            ready=float(values["ready"]) if values.get("ready") else None,
            since=float(values["since"]) if values.get("since") else None,
            address=values.get("address", ""),
            hooks=tuple(values.get("hooks", "").split()),
        )
    except (KeyError, ValueError):
        return None


def _local(tag: str) -> str:
    """An element's tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def volume_xml(name: str, capacity: int, backing_path: str, backing_format: str) -> str:
    """A qcow2 overlay volume on a backing image whose format is given, never probed."""
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", {"unit": "bytes"}).text = str(capacity)
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", {"type": "qcow2"})
    ET.SubElement(ET.SubElement(target, "permissions"), "mode").text = "0600"
    backing = ET.SubElement(vol, "backingStore")
    ET.SubElement(backing, "path").text = backing_path
    ET.SubElement(backing, "format", {"type": backing_format})
    return ET.tostring(vol, encoding="unicode")


@dataclass(frozen=True, slots=True)
class SeedDisk:
    """A cloud-init seed volume, attached read-only as a virtio disk."""

    pool: str
    volume: str


@dataclass(frozen=True, slots=True)
class CloneSpec:
    """Everything that makes one clone's domain XML different from its template."""

    name: str
    uuid: str
    overlay_path: str
    backing_path: str
    backing_format: str
    owner: Ownership
    seed: SeedDisk | None = None
    """The clone's NoCloud seed, when its group gives clones an identity."""
    smbios_serial: str | None = None
    """The SMBIOS system serial (`ds=nocloud;i=...;h=...`), when its group gives clones an identity."""


def clone_domain_xml(template: str, spec: CloneSpec) -> str:
    """The domain XML of a clone, following virt-clone's rules (new identity, no copied MACs)."""
    root = parse(template)
    _strip_live_state(root)
    _set_child(root, "name", spec.name)
    _set_child(root, "uuid", spec.uuid)
    _set_child(root, "on_poweroff", "destroy")
    _set_child(root, "on_crash", "destroy")
    devices = root.find("devices")
    if devices is None:
        raise ValueError("template has no <devices>")
    _rewrite_disk(devices, spec)
    _forget_device_identity(devices, spec.name)
    if spec.seed is not None:
        _attach_seed(devices, spec.seed)
    if spec.smbios_serial is not None:
        _set_smbios_serial(root, spec.smbios_serial)
    _set_metadata(root, spec.owner)
    return ET.tostring(root, encoding="unicode")


def _attach_seed(devices: ET.Element, seed: SeedDisk) -> None:
    """The seed as a read-only virtio disk on the first free vdX (Debian cloud kernels have no AHCI)."""
    taken = {t.get("dev") for t in devices.iter("target")}
    dev = next(f"vd{letter}" for letter in "bcdefghijklmnopqrstuvwxyz" if f"vd{letter}" not in taken)
    disk = ET.Element("disk", {"type": "volume", "device": "disk"})
    ET.SubElement(disk, "driver", {"name": "qemu", "type": "raw"})
    ET.SubElement(disk, "source", {"pool": seed.pool, "volume": seed.volume})
    ET.SubElement(disk, "target", {"dev": dev, "bus": "virtio"})
    ET.SubElement(disk, "readonly")
    last_disk = max((i for i, child in enumerate(devices) if child.tag == "disk"), default=-1)
    devices.insert(last_disk + 1, disk)


def _set_smbios_serial(root: ET.Element, serial: str) -> None:
    """`<os><smbios mode='sysinfo'/>` plus the serial in `<sysinfo type='smbios'><system>`."""
    os_element = root.find("os")
    if os_element is None:
        raise ValueError("template has no <os>")
    for old in os_element.findall("smbios"):
        os_element.remove(old)
    ET.SubElement(os_element, "smbios", {"mode": "sysinfo"})
    sysinfo = next((s for s in root.findall("sysinfo") if s.get("type") == "smbios"), None)
    if sysinfo is None:
        sysinfo = ET.Element("sysinfo", {"type": "smbios"})
        root.insert(list(root).index(os_element), sysinfo)
    system = sysinfo.find("system")
    if system is None:
        system = ET.SubElement(sysinfo, "system")
    for old in [e for e in system.findall("entry") if e.get("name") == "serial"]:
        system.remove(old)
    ET.SubElement(system, "entry", {"name": "serial"}).text = serial


def _set_child(root: ET.Element, tag: str, text: str) -> None:
    """Set the text of a direct child, creating it when absent."""
    child = root.find(tag)
    if child is None:
        child = ET.SubElement(root, tag)
    child.text = text


def _strip_live_state(root: ET.Element) -> None:
    """Drop what belongs to a running template instance: its id and device aliases."""
    root.attrib.pop("id", None)
    for parent in root.iter():
        for alias in parent.findall("alias"):
            parent.remove(alias)


def _rewrite_disk(devices: ET.Element, spec: CloneSpec) -> None:
    """Point the system disk at the overlay, with an explicit, terminated backing chain."""
    disks = [d for d in devices.findall("disk") if d.get("device", "disk") == "disk"]
    if not disks:
        raise ValueError("template has no disk to clone")
    disk = next((d for d in disks if _disk_source(d) == spec.backing_path), disks[0])
    for tag in ("source", "backingStore", "driver"):
        for old in disk.findall(tag):
            disk.remove(old)
    disk.set("type", "file")
    disk.insert(0, ET.Element("driver", {"name": "qemu", "type": "qcow2", "discard": "unmap"}))
    disk.insert(1, ET.Element("source", {"file": spec.overlay_path}))
    backing = ET.Element("backingStore", {"type": "file"})
    ET.SubElement(backing, "format", {"type": spec.backing_format})
    ET.SubElement(backing, "source", {"file": spec.backing_path})
    ET.SubElement(backing, "backingStore")
    disk.insert(2, backing)


def _disk_source(disk: ET.Element) -> str | None:
    """The file a disk element reads from, if it names one."""
    source = disk.find("source")
    return None if source is None else source.get("file")


def _forget_device_identity(devices: ET.Element, name: str) -> None:
    """Remove MACs, target devs and generated socket paths; give serial logs the clone's name."""
    for nic in devices.findall("interface"):
        for tag in ("mac", "target"):
            for old in nic.findall(tag):
                nic.remove(old)
    for channel in devices.findall("channel"):
        source = channel.find("source")
        if channel.get("type") == "unix" and source is not None:
            source.attrib.pop("path", None)
    for tag in ("serial", "console"):
        for port in devices.findall(tag):
            _rename_log(port, name)


def _rename_log(port: ET.Element, name: str) -> None:
    """Give a file-backed serial port a log path of its own, next to the template's."""
    source = port.find("source")
    if port.get("type") != "file" or source is None or not source.get("path"):
        return
    directory = os.path.dirname(source.get("path", ""))
    source.set("path", os.path.join(directory, f"{name}.serial.log"))


def _set_metadata(root: ET.Element, owner: Ownership) -> None:
    """Replace any metadata in our namespace with this clone's ownership."""
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(root, "metadata")
    for old in list(metadata):
        if old.tag.startswith("{" + NAMESPACE + "}"):
            metadata.remove(old)
    metadata.append(_metadata_element(owner, NAMESPACE))


def memory_bytes(domain_xml: str) -> int:
    """The memory a domain is given at boot (its <memory> element), in bytes."""
    root = parse(domain_xml)
    memory = root.find("memory")
    if memory is None or not memory.text:
        raise ValueError("domain XML has no <memory>")
    return int(memory.text) * _UNIT_BYTES[memory.get("unit", "KiB")]


def vcpus(domain_xml: str) -> int:
    """The vCPUs a domain is given (its <vcpu> element; 1 when absent)."""
    element = parse(domain_xml).find("vcpu")
    if element is None or not (element.text or "").strip():
        return 1
    return int((element.text or "1").strip())


_UNIT_BYTES = {
    "b": 1,
    "bytes": 1,
    "KB": 1000,
    "k": 1024,
    "KiB": 1024,
    "MB": 1000**2,
    "M": 1024**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "G": 1024**3,
    "GiB": 1024**3,
}


def channel_connected(live_xml: str, channel: str) -> bool:
    """True when the guest has opened the named virtio-serial port (state='connected')."""
    for target in parse(live_xml).iter("target"):
        if target.get("name") == channel and target.get("type") == "virtio":
            return target.get("state") == "connected"
    return False


def serial_log_paths(live_xml: str) -> list[str]:
    """Paths of the file-backed serial ports of a domain."""
    devices = parse(live_xml).find("devices")
    if devices is None:
        return []
    paths = []
    for port in devices.findall("serial"):
        source = port.find("source")
        if port.get("type") == "file" and source is not None and source.get("path"):
            paths.append(source.get("path", ""))
    return paths


def seed_disks(domain_xml: str) -> list[SeedDisk]:
    """The pool volumes a domain uses as disks whose names are those of our seeds."""
    found = []
    for source in parse(domain_xml).findall("devices/disk/source"):
        pool, volume = source.get("pool"), source.get("volume")
        if pool and volume and SEED_NAME.match(volume):
            found.append(SeedDisk(pool, volume))
    return found


def disk_sources(domain_xml: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Every file or device a domain's disks use (backing chains too), and its (pool, volume) pairs."""
    files: set[str] = set()
    volumes: set[tuple[str, str]] = set()
    devices = parse(domain_xml).find("devices")
    for disk in devices.findall("disk") if devices is not None else []:
        for source in disk.iter("source"):
            for attribute in ("file", "dev"):
                if source.get(attribute):
                    files.add(source.get(attribute, ""))
            if source.get("pool") and source.get("volume"):
                volumes.add((source.get("pool", ""), source.get("volume", "")))
    return files, volumes


def volume_format(volume_xml_text: str) -> str:
    """The format libvirt recorded for a volume (raw when it says nothing)."""
    fmt = parse(volume_xml_text).find("target/format")
    return "raw" if fmt is None else fmt.get("type", "raw")


def volume_backing_path(volume_xml_text: str) -> str | None:
    """The backing file of a volume, if it has one."""
    return parse(volume_xml_text).findtext("backingStore/path")


def volume_ctime(volume_xml_text: str) -> float | None:
    """When the volume's file changed status (the pool reports it for files), if known."""
    text = parse(volume_xml_text).findtext("target/timestamps/ctime")
    return float(text) if text else None


def serialize(root: ET.Element) -> str:
    """An element back to XML text."""
    return ET.tostring(root, encoding="unicode")
