"""Readiness probes: how the host learns that a guest is up without trusting a timer alone.

Four kinds (policy `readiness.probe`): `tcp` (connect to a guest port), `guest_agent` (guest-ping),
`channel` (the virtio-serial port shows state='connected' in the live XML) and `serial` (a line
starting with READY in the file-backed serial log). `channel` and `serial` signal the end of a
boot, so they are only asked while an instance is booting; `tcp` and `guest_agent` keep being
asked afterwards to detect failed members.
"""

from __future__ import annotations

import asyncio
import contextlib

from autoscaler import errors
from autoscaler.policy import spec
from autoscaler.virt import gateway, ops, xml

BOOT_ONLY = frozenset({"channel", "serial"})


async def probe(gw: gateway.Gateway, uuid: str, readiness: spec.Readiness) -> bool:
    """True when the instance answers its group's probe (always True for probe 'none')."""
    try:
        return await _PROBES[readiness.probe](gw, uuid, readiness)
    except (errors.TargetError, OSError):
        return False


async def _none(_gw: gateway.Gateway, _uuid: str, _readiness: spec.Readiness) -> bool:
    """No probe: the warm-up alone decides."""
    return True


async def _channel(gw: gateway.Gateway, uuid: str, readiness: spec.Readiness) -> bool:
    """The guest opened the named virtio-serial port."""
    live = await gw.run(ops.live_xml, uuid, op="probe")
    return xml.channel_connected(live, readiness.channel)


async def _serial(gw: gateway.Gateway, uuid: str, _readiness: spec.Readiness) -> bool:
    """The guest wrote a READY line on a file-backed serial port (root-only files)."""
    live = await gw.run(ops.live_xml, uuid, op="probe")
    for path in xml.serial_log_paths(live):
        if await asyncio.to_thread(serial_says_ready, path):
            return True
    return False


def serial_says_ready(path: str) -> bool:
    """True when a complete line of the log starts with READY."""
    try:
        with open(path, "rb") as log:
            text = log.read().decode(errors="replace")
    except OSError:
        return False
    return any(line.startswith("READY") for line in text.splitlines(keepends=True) if line.endswith("\n"))


async def _agent(gw: gateway.Gateway, uuid: str, readiness: spec.Readiness) -> bool:
    """The QEMU guest agent answers guest-ping."""
    seconds = max(1, int(readiness.interval))
    return await gw.run(ops.agent_ping, uuid, seconds, op="probe")


async def _tcp(gw: gateway.Gateway, uuid: str, readiness: spec.Readiness) -> bool:
    """A TCP port of the guest accepts a connection (address from leases, ARP or agent)."""
    if readiness.port is None:
        return False
    for address in await gw.run(ops.guest_addresses, uuid, op="probe"):
        if await tcp_open(address, readiness.port, readiness.interval):
            return True
    return False


async def tcp_open(host: str, port: int, seconds: float) -> bool:
    """True when a TCP connection to host:port succeeds within `seconds`."""
    try:
        async with asyncio.timeout(seconds):  # not wait_for: on 3.11 it can drop a cancellation
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


_PROBES = {"none": _none, "channel": _channel, "serial": _serial, "guest_agent": _agent, "tcp": _tcp}
