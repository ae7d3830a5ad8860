"""Tells systemd how the daemon is doing (Type=notify) without depending on libsystemd.

Each message is one datagram to $NOTIFY_SOCKET; a leading '@' names an abstract socket. When the
variable is unset (not started by systemd, or in tests) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(message: str) -> bool:
    """Send one raw notification; True when a socket was configured and the datagram was sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), address)
    return True


def ready() -> bool:
    """Startup (or a reload) finished: the daemon serves."""
    return notify("READY=1")


def reloading() -> bool:
    """A reload began; systemd needs the monotonic time to order it against READY=1."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    """Shutdown began."""
    return notify("STOPPING=1")


def watchdog() -> bool:
    """The daemon is alive and its loop is responsive."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """A one-line human summary shown by `systemctl status`."""
    return notify("STATUS=" + text.replace("\n", " "))


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when no watchdog is set.

    WATCHDOG_PID, when present, must name this process; otherwise the watchdog is someone else's.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
