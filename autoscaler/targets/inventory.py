"""The cache of our domains that `inventory(group)` reads, and how a cached domain maps to a state.

libvirt is the source of truth: this cache only mirrors it (reconciles refill it, lifecycle
events patch it), so nothing here is lost by a crash.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from autoscaler import model
from autoscaler.policy import spec
from autoscaler.virt import xml

RUNNING = frozenset({"running", "paused"})


@dataclass(slots=True)
class Record:
    """One of our domains as last seen, plus what this process learned by watching it."""

    uuid: str
    name: str
    host: str
    owner: xml.Ownership
    run: str
    """running, paused, shutoff, crashed or other."""
    memory: int
    probe_failures: int = 0
    """Consecutive failed readiness probes since the last success."""
    last_probe: float = 0.0
    """Monotonic time of the last probe."""
    failed: bool = False
    """Failed its probes after warm-up, or never became ready in time."""
    note: str = ""
    """Why it waits in registration or drain (e.g. a balancer that does not answer)."""
    load: float | None = None
    load_at: float | None = None
    """When `load` was computed (Unix seconds)."""
    addresses: tuple[str, ...] = ()
    """IPv4 addresses from the DHCP lease, ARP or guest agent, as last read (`targets.addresses`)."""
    addresses_read: float = 0.0
    """Monotonic time of the last address reading."""

    @property
    def group(self) -> str:
        """The group named in the metadata."""
        return self.owner.group


def instance_state(record: Record, in_flight: bool) -> model.InstanceState:
    """The inventory state of a cached domain (see the rules in the module's callers)."""
    if record.owner.phase is xml.Phase.DRAINING:
        return model.InstanceState.DRAINING
    if record.failed:
        return model.InstanceState.FAILED
    if record.run not in RUNNING:
        return model.InstanceState.BOOTING if in_flight else model.InstanceState.FAILED
    if record.owner.phase is xml.Phase.ACTIVE:
        return model.InstanceState.READY
    if record.owner.phase is xml.Phase.REGISTERING:
        return model.InstanceState.REGISTERING
    return model.InstanceState.BOOTING


def to_instance(record: Record, in_flight: bool, golden: str | None = None) -> model.Instance:
    """The engine's view of a cached domain; `golden` is the image its group's policy names now."""
    return model.Instance(
        name=record.name,
        uuid=record.uuid,
        state=instance_state(record, in_flight),
        created_at=record.owner.created,
        ready_at=record.owner.ready,
        load=record.load,
        host=record.host,
        outdated=golden is not None and record.owner.golden != golden,
        note=record.note,
        addresses=_addresses(record),
    )


def _addresses(record: Record) -> tuple[str, ...]:
    """The address the load balancers reach first (registration confirmed it), then the others."""
    registered = record.owner.address
    if not registered:
        return record.addresses
    return (registered, *(a for a in record.addresses if a != registered))


class Cache:
    """Our domains per host, and which hosts have been reconciled since they (re)connected.

    A full listing takes a while (several calls per domain), and clones, removals and events
    change single domains meanwhile. Each change is stamped, so a listing installed by
    `replace_host` gives way to whatever changed after it began (`listing_started`).
    """

    def __init__(self, hosts: list[str]) -> None:
        self.hosts = list(hosts)
        self._records: dict[str, dict[str, Record]] = {h: {} for h in hosts}
        self._reconciled: set[str] = set()
        self._stamps = itertools.count(1)
        self._changed: dict[str, dict[str, int]] = {h: {} for h in hosts}
        """Per host: the stamp of each domain's latest upsert or drop while a listing runs."""
        self._listings: dict[str, list[int]] = {h: [] for h in hosts}
        """Per host: the stamps of listings in progress."""

    def listing_started(self, host: str) -> int:
        """Note that a full listing of the host begins; pass the stamp to `replace_host` (or
        `listing_abandoned`), which then keeps every change made after this moment."""
        stamp = next(self._stamps)
        self._listings[host].append(stamp)
        return stamp

    def listing_abandoned(self, host: str, since: int) -> None:
        """A listing begun at `since` failed: it will never be installed."""
        self._listings[host].remove(since)
        self._forget_changes(host)

    def replace_host(self, host: str, records: list[Record], since: int | None = None) -> None:
        """Install a full listing of one host, keeping what was learned by probing.

        With `since` (from `listing_started`), domains upserted or dropped after the listing
        began stay as they are now instead of as listed.
        """
        old = self._records[host]
        fresh = {r.uuid: _merged(old.get(r.uuid), r) for r in records}
        if since is not None:
            self._listings[host].remove(since)
            for uuid in (u for u, stamp in self._changed[host].items() if stamp > since):
                if uuid in old:
                    fresh[uuid] = old[uuid]
                else:
                    fresh.pop(uuid, None)
        self._records[host] = fresh
        self._forget_changes(host)
        self._reconciled.add(host)

    def stamp(self) -> int:
        """A point in the order of changes and listings: take it before reading a domain."""
        return next(self._stamps)

    def upsert(self, record: Record, read_since: int | None = None) -> None:
        """Add or refresh one domain; `read_since` is the stamp taken before it was read.

        A listing that began after that read saw the domain at least as recently, so it is
        not overruled by this (older) view.
        """
        records = self._records[record.host]
        records[record.uuid] = _merged(records.get(record.uuid), record)
        self._note_change(record.host, record.uuid, read_since)

    def drop(self, host: str, uuid: str, read_since: int | None = None) -> None:
        """Forget a domain that is gone (`read_since`: as for `upsert`)."""
        self._records[host].pop(uuid, None)
        self._note_change(host, uuid, read_since)

    def _note_change(self, host: str, uuid: str, read_since: int | None) -> None:
        """Stamp a change of one domain, when a listing in progress must give way to it."""
        if self._listings[host]:
            self._changed[host][uuid] = read_since if read_since is not None else next(self._stamps)

    def _forget_changes(self, host: str) -> None:
        """Keep only the changes a listing still in progress must give way to."""
        pending = self._listings[host]
        oldest = min(pending) if pending else next(self._stamps)
        self._changed[host] = {u: stamp for u, stamp in self._changed[host].items() if stamp > oldest}

    def get(self, host: str, uuid: str) -> Record | None:
        """The cached domain, if any."""
        return self._records[host].get(uuid)

    def group(self, group: str) -> list[Record]:
        """All cached domains of a group on every host, warm-pool members included."""
        return [r for records in self._records.values() for r in records.values() if r.group == group]

    def members(self, group: str) -> list[Record]:
        """The group's members: every cached domain of it except those waiting in its warm pool."""
        return [r for r in self.group(group) if r.owner.phase is not xml.Phase.POOLED]

    def pooled(self, group: str) -> list[Record]:
        """The group's warm-pool members (never part of its size, never a scale-in victim)."""
        return [r for r in self.group(group) if r.owner.phase is xml.Phase.POOLED]

    def all(self) -> list[Record]:
        """Every cached domain of every group."""
        return [r for records in self._records.values() for r in records.values()]

    def find(self, group: str, name: str) -> Record | None:
        """A member of the group by domain name (warm-pool members are not members)."""
        return next((r for r in self.members(group) if r.name == name), None)

    def names(self, host: str) -> set[str]:
        """Names of our domains on a host."""
        return {r.name for r in self._records[host].values()}

    def unreconciled(self, host: str) -> None:
        """The host reconnected: its listing must be redone before ticks may trust it."""
        self._reconciled.discard(host)

    @property
    def ready(self) -> bool:
        """True when every host has been reconciled since its last (re)connect."""
        return self._reconciled.issuperset(self.hosts)

    def ready_except(self, hosts: set[str]) -> bool:
        """True when every host but those given has been reconciled since its last (re)connect."""
        return self._reconciled.issuperset(set(self.hosts) - hosts)


def _merged(previous: Record | None, fresh: Record) -> Record:
    """A fresh listing with the probe history and load learned about the same domain."""
    if previous is None:
        return fresh
    return dataclasses.replace(
        fresh,
        probe_failures=previous.probe_failures,
        last_probe=previous.last_probe,
        failed=previous.failed and fresh.run in RUNNING,
        load=previous.load,
        load_at=previous.load_at,
        note=previous.note,
        addresses=previous.addresses,
        addresses_read=previous.addresses_read,
    )


def revision(policy: spec.GroupPolicy) -> str:
    """A short fingerprint of a policy version, stored as the clone's generation."""
    import hashlib

    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:12]
