"""The one way the KVM target creates and deletes volumes, so nobody else's disk is ever deleted.

Creating records an intent in the ownership ledger first (`ownership`); deleting requires that
the volume be ours (the ledger holds it, or the caller vouches for it: the overlay named after
one of our metadata-marked domains, which that domain used as its disk) AND that no domain on
any connected host, ours or foreign, running or not, use it as a disk. A volume that fails
either test is left alone and said so.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from autoscaler import errors
from autoscaler.targets.ownership import Ledger
from autoscaler.virt import gateway, ops

log = structlog.get_logger(__name__)


class Volumes:
    """Creates and deletes volumes for the target, under the ledger and the in-use check."""

    def __init__(self, ledger: Ledger, gateways: Mapping[str, gateway.Gateway]) -> None:
        self.ledger = ledger
        self._gateways = gateways
        self._unfinished: dict[tuple[str, str, str], bool] = {}
        """Deletes cut short by a temporary error (host, pool, name -> vouched), retried by
        `retry_unfinished` rather than left to the orphan sweep's grace."""

    async def create(
        self, gw: gateway.Gateway, pool: str, name: str, volume_xml: str, kind: str, domain_uuid: str
    ) -> str:
        """Record the intent durably, then create the volume; returns its path.

        When the name is taken (Conflict) the volume there is not ours: the intent is dropped at
        once, so the ledger never vouches for it. On any other failure the intent stays (the
        volume may exist after all); the reconciler deletes it or prunes the intent later.
        """
        await self.ledger.intend(gw.uri, pool, name, kind, domain_uuid)
        try:
            return await gw.run(ops.create_volume, pool, volume_xml, op="vol_create")
        except errors.Conflict:
            await self.ledger.forget(gw.uri, pool, name)
            raise

    async def references(self) -> ops.DiskReferences:
        """The disk sources of every domain on every connected host."""
        files: set[str] = set()
        volumes: set[tuple[str, str]] = set()
        for gw in self._gateways.values():
            if not gw.connected:
                continue
            found = await gw.run(ops.disk_references, op="disk_refs")
            files |= found.files
            volumes |= found.volumes
        return ops.DiskReferences(frozenset(files), frozenset(volumes))

    async def delete(
        self,
        gw: gateway.Gateway,
        pool: str,
        name: str,
        *,
        vouched: bool = False,
        references: ops.DiskReferences | None = None,
    ) -> bool:
        """Delete the volume if it is ours and no domain uses it; True when it is gone now.

        `vouched`: the caller proved it ours otherwise (the disk of our own domain, named after
        its UUID); the in-use check still applies. `references`: a listing taken by the caller.
        A temporary error (a lost connection, a refused fence) is raised, and the delete is kept
        to be tried again by `retry_unfinished`.
        """
        key = (gw.uri, pool, name)
        try:
            gone = await self._delete(gw, pool, name, vouched, references)
        except errors.TargetTemporary:
            self._unfinished[key] = vouched
            raise
        self._unfinished.pop(key, None)
        return gone

    async def retry_unfinished(self) -> None:
        """Try again the deletes a temporary error cut short (each under the same rules)."""
        for (uri, pool, name), vouched in list(self._unfinished.items()):
            gw = self._gateways.get(uri)
            if gw is None or not gw.connected:
                continue
            try:
                await self.delete(gw, pool, name, vouched=vouched)
            except errors.TargetTemporary as exc:
                log.info("volume_delete_retry_failed", host=uri, pool=pool, volume=name, error=str(exc))

    async def _delete(
        self,
        gw: gateway.Gateway,
        pool: str,
        name: str,
        vouched: bool,
        references: ops.DiskReferences | None,
    ) -> bool:
        try:
            path = await gw.run(ops.volume_path, pool, name, op="vol_lookup")
        except gateway.NotFound:
            await self.ledger.forget(gw.uri, pool, name)
            return True
        if not vouched and await self.ledger.owns(gw.uri, pool, name) is None:
            log.warning("volume_not_ours_kept", host=gw.uri, pool=pool, volume=name)
            return False
        if references is None:
            references = await self.references()
        if references.uses(path, pool, name):
            log.warning("volume_in_use_kept", host=gw.uri, pool=pool, volume=name, path=path)
            return False
        await gw.run(ops.delete_volume_by_path, path, op="vol_delete")
        await self.ledger.forget(gw.uri, pool, name)
        return True

    async def delete_path(self, gw: gateway.Gateway, path: str, *, vouched: bool = False) -> bool:
        """`delete` for a volume known by its path (a domain's disk)."""
        try:
            pool, name = await gw.run(ops.volume_at, path, op="vol_lookup")
        except gateway.NotFound:
            return True
        return await self.delete(gw, pool, name, vouched=vouched)
