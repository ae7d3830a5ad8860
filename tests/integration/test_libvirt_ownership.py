"""Foreign volumes named exactly like our overlays, on a real libvirtd, survive everything we do.

One look-alike is detached, one is the disk of a running foreign domain, one the disk of a
shut-off foreign domain; all are qcow2 files backed by the golden image, older than every grace
period. Across scale-out, scale-in, reconciles, a restart of the target (a new process over the
same state directory) and, when this session started libvirtd, a libvirtd restart, each keeps
its inode and its checksum, and the foreign domains keep their state.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import uuid as uuidlib

import pytest

from autoscaler.targets import kvm, ownership
from autoscaler.virt import gateway, ops, xml
from tests.integration import libvirt_env
from tests.integration.test_libvirt_target import policy_for, settings
from tests.targets.hosts import RecordingObserver, eventually

pytestmark = pytest.mark.integration_libvirt


def fingerprint(path: str) -> tuple[int, str]:
    """Inode and SHA-256 of a file."""
    with open(path, "rb") as handle:
        return os.fstat(handle.fileno()).st_ino, hashlib.file_digest(handle, "sha256").hexdigest()


def foreign_xml(env: libvirt_env.LibvirtEnv, name: str, disk: str) -> str:
    """A domain without our metadata whose only disk is `disk` (read-only: QEMU never writes it)."""
    return (
        libvirt_env.template_xml(env.domain_type, env.golden)
        .replace("as-test-template", name)
        .replace(f"<source file='{env.golden}'/>", f"<source file='{disk}'/><readonly/>")
    )


async def make_lookalikes(gw: gateway.Gateway, env: libvirt_env.LibvirtEnv) -> dict[str, str]:
    """Three foreign volumes named like our overlays, created through libvirt (not the ledger)."""
    golden = await gw.run(ops.golden, env.pool, env.golden, op="golden")
    paths = {}
    for role in ("detached", "running", "shutoff"):
        name = xml.overlay_name("itlv", str(uuidlib.uuid4()))
        volume = xml.volume_xml(name, golden.capacity, golden.path, golden.format)
        paths[role] = await gw.run(ops.create_volume, env.pool, volume, op="vol_create")
    return paths


async def test_lookalike_volumes_and_their_domains_are_never_touched(
    libvirt_host: libvirt_env.LibvirtEnv, tmp_path: pathlib.Path
) -> None:
    env = libvirt_host
    policy = policy_for(env)
    observer = RecordingObserver()

    def new_target() -> kvm.KvmTarget:
        ledger = ownership.FileLedger(tmp_path / "volumes")
        return kvm.KvmTarget(
            env.uri, settings=settings(), policies=[policy], ledger=ledger, observer=observer
        )

    target = new_target()
    await target.start()
    gw = target.gateway(env.uri)
    paths = await make_lookalikes(gw, env)
    running = await gw.run(ops.define, foreign_xml(env, "as-flt-deadbeef", paths["running"]), op="define")
    shutoff = await gw.run(ops.define, foreign_xml(env, "as-flt-deadbee0", paths["shutoff"]), op="define")
    await gw.run(ops.start, running, op="start")
    before = {role: fingerprint(path) for role, path in paths.items()}
    try:
        members = (await target.scale_out(policy, 2)).done
        assert len(members) == 2
        assert (await target.scale_in(policy, list(members))).failed == 0
        [report] = await target.reconcile()
        assert sorted(report.lookalikes) == sorted(os.path.basename(p) for p in paths.values())
        assert report.orphan_overlays == []
        await target.close()

        target = new_target()  # a restart: the start reconciles
        await target.start()
        await target.reconcile()
        if env.daemons.libvirtd is not None:  # only a libvirtd this session started is restarted
            reconnects = len(observer.reconnects)
            env.stop_libvirtd()
            await eventually(lambda: not target.ready_for("itlv"), 30.0)
            env.start_libvirtd()
            await eventually(lambda: target.ready_for("itlv") and len(observer.reconnects) > reconnects, 60.0)
            await target.reconcile()

        assert {role: fingerprint(path) for role, path in paths.items()} == before
        gw = target.gateway(env.uri)
        assert (await gw.run(ops.get_domain, running, op="lookup")).run == "running"
        assert (await gw.run(ops.get_domain, shutoff, op="lookup")).run == "shutoff"
    finally:
        gw = target.gateway(env.uri) if target.gateway(env.uri).connected else gw
        for uuid in (running, shutoff):
            await gw.run(ops.destroy, uuid, op="destroy")
            await gw.run(ops.undefine, uuid, op="undefine")
        for path in paths.values():
            await gw.run(ops.delete_volume_by_path, path, op="vol_delete")
        await target.close()
