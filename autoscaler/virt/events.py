"""A bridge from libvirt's event thread to asyncio, because libvirt callbacks run on a foreign thread.

libvirt's default event implementation is registered once per process, before the first
connection opens, and runs in a daemon thread. Callbacks never call libvirt back: they only hand
a small value to the loop that registered them (`loop.call_soon_threadsafe(queue.put_nowait, ev)`).
We deliberately avoid `libvirtaio` (see architecture.md §6).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import libvirt

_lock = threading.Lock()
_thread: threading.Thread | None = None

LIFECYCLE_NAMES = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """A domain changed state on one host."""

    uri: str
    uuid: str
    name: str
    kind: str
    """defined, undefined, started, stopped, crashed, ... (see LIFECYCLE_NAMES)."""
    detail: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """libvirt closed a connection: 0 error, 1 EOF, 2 keepalive timeout, 3 client."""

    uri: str
    reason: int


Event = DomainEvent | ConnectionClosed


def _silence(_ctx: object, _err: object) -> None:
    """libvirt's default handler prints every error to stderr; errors reach us as exceptions."""


def ensure_event_thread() -> None:
    """Register the default event implementation and start its thread, once per process."""
    global _thread  # noqa: PLW0603 (libvirt's event implementation is process-global)
    with _lock:
        if _thread is not None:
            return
        libvirt.registerErrorHandler(_silence, None)
        libvirt.virEventRegisterDefaultImpl()
        _thread = threading.Thread(target=_run_forever, name="libvirt-events", daemon=True)
        _thread.start()


def _run_forever() -> None:
    """Dispatch libvirt events (keepalive included) for the life of the process."""
    while True:
        libvirt.virEventRunDefaultImpl()


class Bridge:
    """Delivers one connection's events into an asyncio queue owned by the caller's loop."""

    def __init__(self, uri: str, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Event]) -> None:
        self.uri = uri
        self._loop = loop
        self._queue = queue

    def post(self, event: Event) -> None:
        """Hand an event to the loop; dropped if the loop has closed (the process is ending)."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> int:
        """libvirt lifecycle callback (event thread); name and UUID are local, not RPC calls."""
        kind = LIFECYCLE_NAMES.get(event, str(event))
        self.post(DomainEvent(self.uri, dom.UUIDString(), dom.name(), kind, detail))
        return 0

    def on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        """libvirt close callback (event thread)."""
        self.post(ConnectionClosed(self.uri, reason))
