"""The blocking libvirt recipes, each run whole inside one gateway worker (`gateway.run(op, fn)`).

They take the connection first and return plain values, never libvirt objects, so nothing stale
can outlive a reconnect. Errors propagate as `libvirtError` and are translated by the gateway;
only the flag fallbacks of undefine and the graceful-then-hard destroy are handled here.
"""

from __future__ import annotations

import contextlib
import json
import os.path
import time
from dataclasses import dataclass
from typing import Any

import libvirt
import libvirt_qemu  # type: ignore[import-untyped]

from autoscaler.virt import xml

_RUN_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
}


@dataclass(frozen=True, slots=True)
class DomainView:
    """One domain as listed: identity, run state and our metadata (None when it is not ours)."""

    uuid: str
    name: str
    run: str
    """running, paused, shutoff, crashed or other."""
    metadata: str | None
    memory: int
    """Maximum memory in bytes."""


@dataclass(frozen=True, slots=True)
class VolumeView:
    """One storage volume: name, path and its XML (format, backing store, timestamps)."""

    name: str
    path: str
    xml: str


@dataclass(frozen=True, slots=True)
class Golden:
    """A golden image as libvirt knows it."""

    path: str
    format: str
    capacity: int


@dataclass(frozen=True, slots=True)
class HostMemory:
    """Memory of one host: total, committed to running domains, and free as the kernel says."""

    total: int
    committed: int
    reported_free: int | None
    """None on the test driver, whose free-memory answer is not meaningful."""
    cpus: int = 0
    """Host CPUs (logical)."""
    vcpus: int = 0
    """vCPUs of the running domains."""

    @property
    def free(self) -> int:
        """Memory a new domain can rely on: uncommitted, and never more than the kernel reports."""
        uncommitted = max(0, self.total - self.committed)
        return uncommitted if self.reported_free is None else min(uncommitted, self.reported_free)


def _view(dom: Any) -> DomainView:
    """A plain view of a domain (three RPCs: state, metadata, max memory)."""
    state = dom.state()[0]
    try:
        metadata = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml.NAMESPACE, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            raise
        metadata = None
    return DomainView(
        dom.UUIDString(), dom.name(), _RUN_STATES.get(state, "other"), metadata, dom.maxMemory() * 1024
    )


def list_domains(conn: Any) -> list[DomainView]:
    """Every domain of the host, ours or not (the caller decides by metadata)."""
    views = []
    for dom in conn.listAllDomains(0):
        with contextlib.suppress(_Vanished):
            views.append(_view_or_vanished(dom))
    return views


class _Vanished(Exception):
    """A domain disappeared between the listing and the look at it."""


def _view_or_vanished(dom: Any) -> DomainView:
    """The view, or _Vanished when the domain went away meanwhile."""
    try:
        return _view(dom)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise _Vanished from exc
        raise


def get_domain(conn: Any, uuid: str) -> DomainView:
    """One domain by UUID (code 42 when it does not exist)."""
    return _view(conn.lookupByUUIDString(uuid))


def find_by_name(conn: Any, name: str) -> DomainView:
    """One domain by name (code 42 when it does not exist)."""
    return _view(conn.lookupByName(name))


def define(conn: Any, domain_xml: str) -> str:
    """Define a persistent domain, validated against the schema; returns its UUID."""
    return str(conn.defineXMLFlags(domain_xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE).UUIDString())


def start(conn: Any, uuid: str) -> None:
    """Start a defined domain (never with AUTODESTROY: a daemon restart must not kill the fleet)."""
    conn.lookupByUUIDString(uuid).create()


def start_paused(conn: Any, uuid: str) -> None:
    """Resume a paused domain, or start a shut-off one; a running one is left as it is."""
    dom = conn.lookupByUUIDString(uuid)
    state = dom.state()[0]
    if state == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
    elif not dom.isActive():
        dom.create()


def suspend(conn: Any, uuid: str) -> None:
    """Pause a running domain's vCPUs (its memory stays allocated); a paused one stays paused."""
    dom = conn.lookupByUUIDString(uuid)
    if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
        dom.suspend()


def set_metadata(conn: Any, uuid: str, metadata: str) -> None:
    """Replace our metadata element, in the live and the persistent definition."""
    dom = conn.lookupByUUIDString(uuid)
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata, xml.PREFIX, xml.NAMESPACE, flags)


def run_state(conn: Any, uuid: str) -> str:
    """running, paused, shutoff, crashed or other."""
    return _RUN_STATES.get(conn.lookupByUUIDString(uuid).state()[0], "other")


def shutdown(conn: Any, uuid: str) -> None:
    """Ask the guest to power off (ACPI); it may ignore the request, so callers re-send."""
    conn.lookupByUUIDString(uuid).shutdown()


def destroy(conn: Any, uuid: str) -> None:
    """Stop the domain: SIGTERM first (graceful), then SIGKILL when that did not do it."""
    dom = conn.lookupByUUIDString(uuid)
    with contextlib.suppress(libvirt.libvirtError):
        dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
    if dom.isActive():
        dom.destroy()


_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM,
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
)


def undefine(conn: Any, uuid: str) -> None:
    """Remove the definition with its artefacts, falling back to fewer flags (code 8)."""
    dom = conn.lookupByUUIDString(uuid)
    for flags in _UNDEFINE_FLAGS:
        try:
            dom.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                raise
            continue
        return
    dom.undefine()


def disk_paths(conn: Any, uuid: str) -> list[str]:
    """Source files of the domain's disks, from its persistent definition."""
    text = conn.lookupByUUIDString(uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    root = xml.parse(text)
    return [s.get("file", "") for s in root.findall("devices/disk/source") if s.get("file")]


def live_xml(conn: Any, uuid: str) -> str:
    """The running definition (channel states, serial paths, generated socket paths)."""
    return str(conn.lookupByUUIDString(uuid).XMLDesc(0))


def missing_overlays(conn: Any, wanted: list[tuple[str, str]]) -> list[str]:
    """UUIDs among (uuid, overlay name) pairs whose overlay file provably no longer exists.

    Provably: the domain's disk names the overlay, and either libvirt finds no file behind the
    volume (`info()` re-reads it: code 50), or the volume is unknown to an *active* pool whose
    directory holds the path. An inactive or unknown pool proves nothing, so it is never missing.
    """
    pool_dirs = _active_pool_dirs(conn)
    missing = []
    for uuid, name in wanted:
        with contextlib.suppress(_Vanished):
            if _overlay_missing(conn, uuid, name, pool_dirs):
                missing.append(uuid)
    return missing


def _overlay_missing(conn: Any, uuid: str, name: str, pool_dirs: set[str]) -> bool:
    """One domain's answer for `missing_overlays`."""
    try:
        text = conn.lookupByUUIDString(uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise _Vanished from exc
        raise
    paths = [s.get("file", "") for s in xml.parse(text).findall("devices/disk/source")]
    path = next((p for p in paths if os.path.basename(p) == name), None)
    if path is None:
        return False
    try:
        volume = conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
        return os.path.dirname(path) in pool_dirs
    try:
        volume.info()  # re-reads the file: code 50 when it was deleted behind libvirt's back
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
        return True
    return False


def _active_pool_dirs(conn: Any) -> set[str]:
    """Target directories of the active storage pools."""
    dirs = set()
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        directory = xml.parse(pool.XMLDesc(0)).findtext("target/path")
        if directory:
            dirs.add(directory.rstrip("/") or "/")
    return dirs


@dataclass(frozen=True, slots=True)
class DiskReferences:
    """What the disks of every domain of a host use: paths (as written and resolved) and pool volumes."""

    files: frozenset[str]
    volumes: frozenset[tuple[str, str]]

    def uses(self, path: str, pool: str, name: str) -> bool:
        """True when a disk names this volume by path (normalised, or resolved) or by pool and name."""
        return bool(_path_forms(path) & self.files) or (pool, name) in self.volumes


def _path_forms(path: str) -> set[str]:
    """A path as written (normalised) and, when it exists here, with symbolic links resolved."""
    forms = {os.path.normpath(path)}
    with contextlib.suppress(OSError):
        if os.path.exists(path):
            forms.add(os.path.realpath(path))
    return forms


def disk_references(conn: Any) -> DiskReferences:
    """Every disk source of every domain of the host, ours or not, running or not.

    A running persistent domain is read twice, live and as defined, since a hot-plugged disk
    is in one only; backing chains count, a file some domain's overlay is built on is in use.
    """
    files: set[str] = set()
    volumes: set[tuple[str, str]] = set()
    for dom in conn.listAllDomains(0):
        try:
            texts = [dom.XMLDesc(0)]
            if dom.isActive() and dom.isPersistent():
                texts.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue
            raise
        for text in texts:
            found_files, found_volumes = xml.disk_sources(text)
            for path in found_files:
                files |= _path_forms(path)
            volumes |= found_volumes
    return DiskReferences(frozenset(files), frozenset(volumes))


def volume_at(conn: Any, path: str) -> tuple[str, str]:
    """The pool and name of the volume at a path (code 50 when libvirt knows no volume there)."""
    volume = conn.storageVolLookupByPath(path)
    return str(volume.storagePoolLookupByVolume().name()), str(volume.name())


def volume_path(conn: Any, pool: str, name: str) -> str:
    """The path of a volume by pool and name (code 50 when it does not exist)."""
    return str(conn.storagePoolLookupByName(pool).storageVolLookupByName(name).path())


def template_xml(conn: Any, name: str) -> str:
    """The persistent XML of a template domain, which is only read, never touched."""
    return str(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def create_volume(conn: Any, pool: str, volume_xml: str) -> str:
    """Create a volume in a pool (no refresh needed: libvirt knows it at once); returns its path."""
    return str(conn.storagePoolLookupByName(pool).createXML(volume_xml, 0).path())


UPLOAD_CHUNK = 256 * 1024


def upload_volume(conn: Any, pool: str, name: str, data: bytes) -> None:
    """Write `data` into an existing volume over the libvirt connection (works for remote hosts).

    virStorageVolUpload streams through the RPC connection, so no file copy or SSH is needed;
    the stream is aborted on any error (the caller deletes the volume).
    """
    volume = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
    stream = conn.newStream(0)
    try:
        volume.upload(stream, 0, len(data), 0)
        for offset in range(0, len(data), UPLOAD_CHUNK):
            chunk = data[offset : offset + UPLOAD_CHUNK]
            while chunk:
                sent = stream.send(chunk)
                chunk = chunk[sent:]
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def seed_disks(conn: Any, uuid: str) -> list[xml.SeedDisk]:
    """The seed volumes the domain's persistent definition attaches."""
    return xml.seed_disks(conn.lookupByUUIDString(uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def delete_volume_by_path(conn: Any, path: str) -> None:
    """Delete a volume by its path (code 50 when it is already gone)."""
    conn.storageVolLookupByPath(path).delete(0)


def delete_volume(conn: Any, pool: str, name: str) -> None:
    """Delete a volume by pool and name (code 50 when it is already gone)."""
    conn.storagePoolLookupByName(pool).storageVolLookupByName(name).delete(0)


def list_volumes(conn: Any, pool: str) -> list[VolumeView]:
    """The volumes of a pool as libvirt last saw them (no refresh: refreshes race volume jobs)."""
    views = []
    for vol in conn.storagePoolLookupByName(pool).listAllVolumes(0):
        views.append(VolumeView(vol.name(), vol.path(), vol.XMLDesc(0)))
    return views


def golden(conn: Any, pool: str, image: str) -> Golden:
    """The golden image by path (any pool) or by volume name in `pool`; refreshes once if unknown."""
    lookup = _golden_lookup(conn, pool, image)
    try:
        vol = lookup()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
        conn.storagePoolLookupByName(pool).refresh(0)
        vol = lookup()
    fmt = xml.volume_format(vol.XMLDesc(0))
    return Golden(vol.path(), fmt, int(vol.info()[1]))


def _golden_lookup(conn: Any, pool: str, image: str) -> Any:
    """A thunk looking the image up by path or by name."""
    if image.startswith("/"):
        return lambda: conn.storageVolLookupByPath(image)
    return lambda: conn.storagePoolLookupByName(pool).storageVolLookupByName(image)


def host_memory(conn: Any, test_driver: bool) -> HostMemory:
    """Total memory, memory committed to running domains, and the kernel's free memory."""
    info = conn.getInfo()
    total = int(info[1]) * 1024 * 1024
    committed = vcpus = 0
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        with contextlib.suppress(libvirt.libvirtError):
            _state, max_mem, _mem, domain_vcpus, _cpu = dom.info()
            committed += int(max_mem) * 1024
            vcpus += int(domain_vcpus)
    reported = None if test_driver else int(conn.getFreeMemory())
    return HostMemory(total, committed, reported, int(info[2]), vcpus)


def cpu_times(conn: Any, uuids: list[str]) -> dict[str, tuple[int, int, float]]:
    """(cpu time ns, vCPUs, monotonic reading time) of each running domain asked for."""
    readings: dict[str, tuple[int, int, float]] = {}
    for uuid in uuids:
        with contextlib.suppress(libvirt.libvirtError):
            state, _max_mem, _mem, vcpus, cpu_ns = conn.lookupByUUIDString(uuid).info()
            if state == libvirt.VIR_DOMAIN_RUNNING:
                readings[uuid] = (int(cpu_ns), int(vcpus), time.monotonic())
    return readings


def agent_ping(conn: Any, uuid: str, seconds: int) -> bool:
    """True when the guest agent answers guest-ping within `seconds`."""
    dom = conn.lookupByUUIDString(uuid)
    answer = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-ping"}), seconds, 0)
    return answer is not None and "return" in json.loads(answer)


def guest_addresses(conn: Any, uuid: str) -> list[str]:
    """IPv4 addresses of the guest, from DHCP leases, then ARP, then the guest agent."""
    dom = conn.lookupByUUIDString(uuid)
    sources = (
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
    )
    for source in sources:
        with contextlib.suppress(libvirt.libvirtError):
            found = [
                addr["addr"]
                for iface in dom.interfaceAddresses(source).values()
                for addr in iface.get("addrs") or []
                if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4
            ]
            if found:
                return found
    return []


def copy_volume(conn: Any, pool: str, name: str, source_path: str) -> str:
    """A full, independent copy of a volume (what virt-clone does); returns the new path."""
    target = conn.storagePoolLookupByName(pool)
    source = conn.storageVolLookupByPath(source_path)
    fmt = xml.volume_format(source.XMLDesc(0))
    capacity = int(source.info()[1])
    volume = (
        f"<volume><name>{name}</name><capacity unit='bytes'>{capacity}</capacity>"
        f"<target><format type='{fmt}'/></target></volume>"
    )
    return str(target.createXMLFrom(volume, source, 0).path())
