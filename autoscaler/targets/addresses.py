"""Members' addresses: read from libvirt (DHCP lease, then ARP, then guest agent) and kept in the cache.

The inventory shows them (/status, `autoscaler status`) and Prometheus service discovery lists
them. A member without an address yet is asked again every `address_retry` seconds (a guest
takes a few seconds to send its DHCP request); one that has one is re-read every
`address_interval`, so a renewed or changed lease shows up. A failed reading keeps the last one.
"""

from __future__ import annotations

import asyncio
import time

from autoscaler import errors
from autoscaler.targets import inventory as membership
from autoscaler.targets.state import KvmState
from autoscaler.virt import ops, xml


async def refresh(state: KvmState) -> None:
    """Read the addresses of the running members that are due, all at once."""
    now = time.monotonic()
    due = [r for r in state.cache.all() if _due(state, r, now)]
    await asyncio.gather(*(_read(state, r, now) for r in due))


def _due(state: KvmState, record: membership.Record, now: float) -> bool:
    """Running, not waiting in a warm pool, and its last reading old enough."""
    if record.run != "running" or record.owner.phase is xml.Phase.POOLED:
        return False
    settings = state.settings
    every = settings.address_interval if record.addresses else settings.address_retry
    return now - record.addresses_read >= every


async def _read(state: KvmState, record: membership.Record, now: float) -> None:
    record.addresses_read = now
    gw = state.gateways[record.host]
    if not gw.connected:
        return
    try:
        found = await gw.run(ops.guest_addresses, record.uuid, op="addresses")
    except errors.TargetError:
        return
    if found:
        record.addresses = tuple(found)
