"""Seed volumes: the one place a clone's cloud-init seed is built, stored, attached and deleted.

Built in memory (`identity.seed`), stored through libvirt's storage API (volume create, then an
upload stream over the connection, so remote `qemu+ssh` hosts need no file copy), named after the
domain's full UUID like its overlay, and deleted with the clone. Every seed is recorded in the
ownership ledger before it exists (`volumes.Volumes`), so a crash between the upload and the
define leaves a seed the reconciler can prove ours and delete once its domain is known nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.parse
from dataclasses import dataclass

from autoscaler import errors
from autoscaler.identity import seed
from autoscaler.policy import spec
from autoscaler.targets.volumes import Volumes
from autoscaler.virt import gateway, ops, xml


@dataclass(frozen=True, slots=True)
class Plan:
    """One clone's identity and the documents of its seed, decided before anything is created."""

    identity: seed.Identity
    documents: seed.Seed

    @property
    def serial(self) -> str:
        """The SMBIOS serial."""
        return seed.smbios_serial(self.identity)


def host_name(uri: str) -> str:
    """The hypervisor's name for templates: the URI's host, or this machine's for a local URI."""
    return urllib.parse.urlsplit(uri).hostname or socket.gethostname()


def plan(instance: spec.Instance, name: str, uuid: str, group: str, host_uri: str) -> Plan:
    """The identity (instance-id = the domain UUID) and rendered documents of one clone.

    TargetPermanent when a template cannot render (the policy check makes that rare: only a
    `${host}` in the hostname pattern depends on the host).
    """
    host = host_name(host_uri)
    try:
        hostname = seed.hostname(instance.hostname, name, uuid, group, host)
        identity = seed.Identity(name=name, instance_id=uuid, hostname=hostname, group=group, host=host)
        documents = seed.build(
            identity, instance.user_data_text, instance.network_config_text, instance.ssh_authorized_keys
        )
    except ValueError as exc:
        raise errors.TargetPermanent(f"instance identity of {name}: {exc}") from exc
    return Plan(identity, documents)


async def create(
    gw: gateway.Gateway, volumes: Volumes, pool: str, group: str, uuid: str, documents: seed.Seed
) -> xml.SeedDisk:
    """Build the ISO (in a thread), record and create its volume, upload it; the disk to attach.

    The ownership ledger records the seed before libvirt creates it, as for overlays. A driver
    without volume upload (the test:/// driver) fails with TargetPermanent naming the missing
    capability. Whatever fails after the volume exists deletes it again.
    """
    image = await asyncio.to_thread(seed.iso, documents.files())
    disk = xml.SeedDisk(pool, xml.seed_name(group, uuid))
    await volumes.create(gw, pool, disk.volume, xml.seed_volume_xml(disk.volume, len(image)), "seed", uuid)
    try:
        await gw.run(ops.upload_volume, pool, disk.volume, image, op="vol_upload")
    except BaseException as exc:
        with contextlib.suppress(errors.TargetError):
            await delete(gw, volumes, disk)
        if isinstance(exc, errors.TargetPermanent):
            raise errors.TargetPermanent(
                f"cannot store the cloud-init seed on {gw.uri}: this libvirt driver does not support "
                f"volume upload ({exc})"
            ) from exc
        raise
    return disk


async def delete(gw: gateway.Gateway, volumes: Volumes, disk: xml.SeedDisk, vouched: bool = False) -> None:
    """Delete a seed volume if it is ours (ledger, or `vouched` by its domain) and unused."""
    await volumes.delete(gw, disk.pool, disk.volume, vouched=vouched)


async def attached(gw: gateway.Gateway, uuid: str) -> list[xml.SeedDisk]:
    """The seeds a domain attaches (read before it is undefined)."""
    return await gw.run(ops.seed_disks, uuid, op="lookup")
