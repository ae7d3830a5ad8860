"""Which volumes this daemon created, recorded durably before each exists: a name proves nothing.

Anyone can create a file named `as-web-<uuid>.qcow2`. So the daemon deletes a volume only when
this ledger holds an intent for it AND no domain on any connected host (ours or foreign, running
or not) uses it as a disk (see `targets.volumes`). The same rule holds for every kind of volume
the daemon creates: overlays, cloud-init seeds, anything added later. To add a kind:

    await ledger.intend(host, pool, name, kind="seed", domain_uuid=uuid)  # BEFORE creating it
    ...create the volume...                     # a crash here leaves an intent, pruned later
    await ledger.forget(host, pool, name)      # AFTER it is deleted (or its creation refused)
    if await ledger.owns(host, pool, name): ... # the only proof that it is ours

or, simpler, create and delete through `volumes.Volumes.create` / `.delete`, which do all that.

`Ledger` is the seam; `FileLedger` keeps one small JSON file per volume in the state directory,
written to a temporary file, fsynced and renamed (then the directory fsynced), so the record is
on disk before libvirt is asked to create anything. A coordinated deployment puts the same
records in etcd behind the same Protocol (`coordination.ledger`), so a new leader can prove the
volumes of its predecessor ours. `MemoryLedger` is for tests and tools.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import structlog

from autoscaler import atomic

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Intent:
    """One volume the daemon set out to create: where, what for, and when."""

    host: str
    """The libvirt URI it was created through."""
    pool: str
    name: str
    kind: str
    """overlay, seed, ...: what it is for (reports and logs only)."""
    domain_uuid: str
    """The domain it was made for (its UUID is chosen before anything is created)."""
    created: float
    """Unix time of the intent."""

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the volume: host, pool, name."""
        return (self.host, self.pool, self.name)

    def encode(self) -> str:
        """The record as stored (JSON)."""
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, text: str) -> Intent:
        """A stored record; ValueError (or KeyError, TypeError) when it is not one."""
        data = json.loads(text)
        return cls(
            str(data["host"]),
            str(data["pool"]),
            str(data["name"]),
            str(data["kind"]),
            str(data["domain_uuid"]),
            float(data["created"]),
        )


class Ledger(Protocol):
    """The durable record of the volumes the daemon created."""

    async def intend(self, host: str, pool: str, name: str, kind: str, domain_uuid: str) -> Intent:
        """Record, durably, that this volume is about to be created; call it before creating it."""
        ...

    async def forget(self, host: str, pool: str, name: str) -> None:
        """Drop the record once the volume is gone (or was never created); idempotent."""
        ...

    async def owns(self, host: str, pool: str, name: str) -> Intent | None:
        """The intent recorded for this volume, None when the daemon never set out to create it."""
        ...

    async def entries(self, host: str) -> list[Intent]:
        """Every intent recorded for volumes on one host."""
        ...


class MemoryLedger:
    """A ledger that lives as long as the process (tests, tools; a restart forgets everything)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._intents: dict[tuple[str, str, str], Intent] = {}

    async def intend(self, host: str, pool: str, name: str, kind: str, domain_uuid: str) -> Intent:
        """Record the intent in memory."""
        intent = Intent(host, pool, name, kind, domain_uuid, _now(self._clock))
        self._intents[intent.key] = intent
        return intent

    async def forget(self, host: str, pool: str, name: str) -> None:
        """Drop the intent."""
        self._intents.pop((host, pool, name), None)

    async def owns(self, host: str, pool: str, name: str) -> Intent | None:
        """The intent, if recorded."""
        return self._intents.get((host, pool, name))

    async def entries(self, host: str) -> list[Intent]:
        """The intents of one host."""
        return [i for i in self._intents.values() if i.host == host]


class FileLedger:
    """One JSON file per volume under a directory of the state directory; fsynced before use.

    The whole directory is read once, at first use, into an index that every change keeps
    current: only this daemon writes there. An unreadable record is logged and ignored, which
    errs on the safe side (a volume not proven ours is never deleted).
    """

    def __init__(self, directory: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self._index: dict[tuple[str, str, str], Intent] | None = None
        self._lock = asyncio.Lock()

    async def intend(self, host: str, pool: str, name: str, kind: str, domain_uuid: str) -> Intent:
        """Write and fsync the record; only then may the volume be created."""
        intent = Intent(host, pool, name, kind, domain_uuid, _now(self._clock))
        async with self._lock:
            index = await self._loaded()
            await asyncio.to_thread(
                atomic.write_text, self._path(intent.key), intent.encode(), sync_directory=True
            )
            index[intent.key] = intent
        return intent

    async def forget(self, host: str, pool: str, name: str) -> None:
        """Remove the record (and fsync the directory)."""
        key = (host, pool, name)
        async with self._lock:
            index = await self._loaded()
            await asyncio.to_thread(atomic.remove, self._path(key), sync_directory=True)
            index.pop(key, None)

    async def owns(self, host: str, pool: str, name: str) -> Intent | None:
        """The recorded intent, if any."""
        async with self._lock:
            return (await self._loaded()).get((host, pool, name))

    async def entries(self, host: str) -> list[Intent]:
        """The intents of one host."""
        async with self._lock:
            return [i for i in (await self._loaded()).values() if i.host == host]

    async def records(self) -> list[Intent]:
        """Every intent, whatever the host (to move them into a shared ledger)."""
        async with self._lock:
            return list((await self._loaded()).values())

    def _path(self, key: tuple[str, str, str]) -> Path:
        """A fixed-length file name per volume (URIs and names may hold any character)."""
        digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:40]
        return self.directory / f"{digest}.json"

    async def _loaded(self) -> dict[tuple[str, str, str], Intent]:
        if self._index is None:
            self._index = await asyncio.to_thread(_read_all, self.directory)
        return self._index


def _now(clock: Callable[[], float]) -> float:
    return float(clock())


def _read_all(directory: Path) -> dict[tuple[str, str, str], Intent]:
    index: dict[tuple[str, str, str], Intent] = {}
    if not directory.is_dir():
        return index
    for path in directory.glob("*.json"):
        try:
            intent = Intent.decode(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("volume_ledger_record_unreadable", file=str(path), error=str(exc))
            continue
        index[intent.key] = intent
    return index
