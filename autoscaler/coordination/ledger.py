"""The volume ownership ledger in etcd, so whichever daemon leads can prove every daemon's volumes ours.

A file ledger lives on one daemon's host: after a failover the new leader could not prove the
volumes its predecessor created, and an overlay left by a clone the old leader was killed in
would stay forever. Here every intent is one key,

    <prefix>/volumes/<host>/<pool>/<name>   (each part URL-encoded)  ->  the Intent as JSON

written with an acknowledged put (committed by a quorum) before the volume is created. Reads are
linearizable ranges, so a member cut off from its quorum cannot answer from a stale copy. When
etcd does not answer, every call raises `LedgerUnavailable` (a `CoordinationUnavailable` and a
`TargetTemporary`): an unanswered read never becomes "not ours", so nothing is deleted, and no
volume is created without its intent recorded.

Writes are not fenced: an intent is a fact ("about to create this"), and the creation itself is
fenced by the gateway; a deposed leader's intent whose volume never appears is pruned after the
orphan grace like any other. All daemons must name each host by the same libvirt URI.

`migrate` moves the records of a daemon's file ledger (from before coordination was enabled) into
etcd once, when it becomes leader.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from autoscaler import errors
from autoscaler.coordination import etcd
from autoscaler.targets import ownership

log = structlog.get_logger("autoscaler.coordination")
MIGRATED_SUFFIX = ".migrated-to-etcd"
"""A file ledger moved into etcd is renamed `<directory><suffix>-<unix time>` and kept for reference."""


class EtcdLedger:
    """Implements `targets.ownership.Ledger` with one etcd key per volume."""

    def __init__(self, client: etcd.Client, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = f"{prefix.rstrip('/')}/volumes/"
        self._clock = clock

    def key(self, host: str, pool: str, name: str) -> str:
        """Where one volume's intent lives."""
        return f"{self._host_prefix(host)}{_part(pool)}/{_part(name)}"

    def _host_prefix(self, host: str) -> str:
        return f"{self.prefix}{_part(host)}/"

    async def intend(self, host: str, pool: str, name: str, kind: str, domain_uuid: str) -> ownership.Intent:
        """Put the intent; returns once etcd acknowledged it (a quorum has it)."""
        intent = ownership.Intent(host, pool, name, kind, domain_uuid, float(self._clock()))
        await self._call(
            "intend",
            "kv/put",
            {"key": etcd.b64(self.key(host, pool, name)), "value": etcd.b64(intent.encode())},
        )
        return intent

    async def forget(self, host: str, pool: str, name: str) -> None:
        """Delete the key (idempotent)."""
        await self._call("forget", "kv/deleterange", {"key": etcd.b64(self.key(host, pool, name))})

    async def owns(self, host: str, pool: str, name: str) -> ownership.Intent | None:
        """The intent read back from etcd (linearizable); None only when etcd says there is none."""
        data = await self._call("owns", "kv/range", {"key": etcd.b64(self.key(host, pool, name))})
        intents = _intents(data)
        return intents[0] if intents else None

    async def entries(self, host: str) -> list[ownership.Intent]:
        """Every intent of one host: one range over its prefix."""
        start = self._host_prefix(host).encode()
        body = {"key": etcd.b64(start), "range_end": etcd.b64(_prefix_end(start))}
        return _intents(await self._call("entries", "kv/range", body))

    async def adopt(self, intent: ownership.Intent) -> bool:
        """Put an intent recorded elsewhere unless etcd has one for that volume; True when put."""
        key = self.key(*intent.key)
        try:
            result = await self.client.txn([etcd.created_at(key, 0)], [etcd.put(key, intent.encode())])
        except errors.CoordinationUnavailable as exc:
            raise errors.LedgerUnavailable(f"volume ledger: adopt {key}: {exc}") from exc
        return result.succeeded

    async def _call(self, what: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.client.call(path, body)
        except errors.CoordinationUnavailable as exc:
            raise errors.LedgerUnavailable(f"volume ledger: {what}: {exc}") from exc


async def migrate(directory: Path, ledger: EtcdLedger) -> int:
    """Move a file ledger's records into etcd once; returns how many were new there.

    Each record is put unless etcd already has one for that volume (etcd's is newer). When all
    are in, the directory is renamed (`MIGRATED_SUFFIX`), so a later leadership does not copy
    them again; a failure part-way leaves it in place and the next leadership finishes the copy.
    LedgerUnavailable when etcd does not answer, OSError when the directory cannot be renamed.
    """
    if not await asyncio.to_thread(directory.is_dir):
        return 0
    records = await ownership.FileLedger(directory).records()
    added = 0
    for intent in records:
        added += await ledger.adopt(intent)
    moved = directory.with_name(f"{directory.name}{MIGRATED_SUFFIX}-{int(time.time())}")
    await asyncio.to_thread(directory.rename, moved)
    log.info(
        "volume_ledger_migrated", records=len(records), added=added, source=str(directory), kept_as=str(moved)
    )
    return added


def _part(text: str) -> str:
    """One path element of a key: URL-encoded, so '/' and any other character are unambiguous."""
    return urllib.parse.quote(text, safe="")


def _prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (etcd's rule: last byte + 1)."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _intents(data: dict[str, Any]) -> list[ownership.Intent]:
    """The intents of a range answer; an unreadable record is said and left out (never deleted)."""
    found = []
    for raw in data.get("kvs", []):
        kv = etcd.KeyValue.parse(raw)
        try:
            found.append(ownership.Intent.decode(kv.value))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("volume_ledger_record_unreadable", key=kv.key, error=str(exc))
    return found
