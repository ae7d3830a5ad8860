"""One connection per libvirt URI, and the only road from asyncio to a blocking libvirt call.

Every call runs in a bounded thread pool (4 workers stay below libvirtd's default of 5 requests
per client), under a copy of the caller's contextvars, with a timeout that never orphans a thread,
and with `libvirtError` translated into `autoscaler.errors` in exactly one place: `translate`.

It is also the one choke point of every change to a host: when daemons coordinate, each call
whose op is not known to be read-only first asks the `Fence` for a proof of leadership, and the
worker thread drops the call if that proof has run out by the time it would reach libvirt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import libvirt

from autoscaler import errors
from autoscaler.virt import events

T = TypeVar("T")
MAX_WORKERS = 4


class CallObserver(Protocol):
    """What the gateway reports; `targets.TargetObserver` satisfies it."""

    def libvirt_call(self, op: str, seconds: float, error_class: str | None) -> None:
        """One blocking call finished (error_class None on success)."""
        ...

    def reconnected(self, uri: str) -> None:
        """The connection was lost and opened again."""
        ...


READ_ONLY_OPS = frozenset(
    {
        "open",
        "addresses",
        "disk_refs",
        "keepalive",
        "subscribe",
        "list",
        "lookup",
        "golden",
        "host_memory",
        "overlay_check",
        "probe",
        "state",
        "stats",
        "template",
        "vol_list",
        "vol_lookup",
    }
)
"""Ops that change nothing on a host; every other op (define, start, destroy, undefine, shutdown,
suspend, metadata, vol_create, vol_upload, vol_delete, and any op added later) is fenced."""


class Fence(Protocol):
    """The proof of leadership a mutating call needs (`coordination.fence.Fence` gives it)."""

    async def admit(self, op: str, uri: str) -> float:
        """Prove the right to run `op` now; the monotonic time until which it may start.

        Raises `errors.Fenced` when the right cannot be proved.
        """
        ...


class _Quiet:
    """The observer used when none is given."""

    def libvirt_call(self, op: str, seconds: float, error_class: str | None) -> None:
        """Ignore the call."""

    def reconnected(self, uri: str) -> None:
        """Ignore the reconnect."""


class NotFound(errors.TargetError):
    """The domain, volume or metadata looked up does not exist (code 42, 50 or 80)."""

    error_class = "not_found"


class ConnectionLost(errors.TargetTemporary):
    """The connection to libvirtd broke; reconnect, then reconcile."""

    error_class = "connection"


class _AlreadyDoneError(Exception):
    """Internal: the operation's goal already holds, so the call counts as success."""


# Codes that mean "the goal already holds" for one operation only (libvirt.md §4).
_DONE = {
    "shutdown": {
        libvirt.VIR_ERR_NO_DOMAIN,
        libvirt.VIR_ERR_OPERATION_INVALID,
        libvirt.VIR_ERR_INTERNAL_ERROR,
    },
    "destroy": {libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID},
    "undefine": {libvirt.VIR_ERR_NO_DOMAIN},
    "vol_delete": {libvirt.VIR_ERR_NO_STORAGE_VOL},
    "start": {libvirt.VIR_ERR_OPERATION_INVALID},
}
_BY_CODE: dict[int, type[errors.TargetError]] = {
    libvirt.VIR_ERR_NO_DOMAIN: NotFound,
    libvirt.VIR_ERR_NO_STORAGE_VOL: NotFound,
    libvirt.VIR_ERR_NO_DOMAIN_METADATA: NotFound,
    libvirt.VIR_ERR_OPERATION_FAILED: errors.Conflict,
    libvirt.VIR_ERR_STORAGE_VOL_EXIST: errors.Conflict,
    libvirt.VIR_ERR_DOM_EXIST: errors.Conflict,
    libvirt.VIR_ERR_OPERATION_TIMEOUT: errors.TargetTemporary,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE: errors.TargetTemporary,
    libvirt.VIR_ERR_NO_SUPPORT: errors.TargetPermanent,
    libvirt.VIR_ERR_INVALID_ARG: errors.TargetPermanent,
    libvirt.VIR_ERR_XML_ERROR: errors.TargetPermanent,
    libvirt.VIR_ERR_XML_DETAIL: errors.TargetPermanent,
    libvirt.VIR_ERR_XML_INVALID_SCHEMA: errors.TargetPermanent,
    libvirt.VIR_ERR_NO_STORAGE_POOL: errors.TargetPermanent,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: errors.TargetPermanent,
}
"""Code -> class; unknown codes are temporary. Codes 1 and 38 are special-cased in `translate`."""
_RPC_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}
_LINK_CODES = {libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_ERR_SYSTEM_ERROR}
"""Codes that mean a broken connection when they come from the RPC/REMOTE error domain."""


def _assume_alive() -> bool:
    """The default liveness answer when no connection is at hand to ask."""
    return True


def translate(exc: libvirt.libvirtError, op: str, alive: Callable[[], bool] = _assume_alive) -> Exception:
    """The project error for a libvirt error raised by `op` (by code, per libvirt.md §4).

    Codes 1 (internal error) and 38 (system error) need more than the code: from the RPC/REMOTE
    error domain they mean a broken connection. Code 38 is also a broken connection when the
    connection is no longer `alive()`; from anywhere else (a file that cannot be unlinked, a
    permission refused by an NFS pool) it is a temporary failure of a healthy connection. The
    storage pool's "asynchronous jobs running" message makes a code 1 temporary.
    """
    code, domain, message = exc.get_error_code(), exc.get_error_domain(), f"{op}: {exc}"
    if code in _LINK_CODES and domain in _RPC_DOMAINS:
        return ConnectionLost(message)
    if code == libvirt.VIR_ERR_SYSTEM_ERROR:
        broken = not alive()
        return (ConnectionLost if broken else errors.TargetTemporary)(f"{message} (code {code})")
    if code in _DONE.get(op, ()):
        return _AlreadyDoneError(message)
    if code == libvirt.VIR_ERR_INTERNAL_ERROR and "asynchronous jobs running" in message:
        return errors.TargetTemporary(message)
    return _BY_CODE.get(code, errors.TargetTemporary)(f"{message} (code {code})")


def new_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The bounded pool all gateways of one daemon share."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="libvirt")


class Gateway:
    """The connection to one libvirt URI; use `run`/`call`, never the connection directly."""

    def __init__(
        self,
        uri: str,
        executor: concurrent.futures.ThreadPoolExecutor,
        *,
        observer: CallObserver | None = None,
        timeout: float = 120.0,
        queue: asyncio.Queue[events.Event] | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.uri = uri
        self.fence = fence
        self.timeout = timeout
        self._executor = executor
        self._observer: CallObserver = observer or _Quiet()
        self._queue = queue
        self._conn: Any = None
        self._callback_ids: list[int] = []

    @property
    def connected(self) -> bool:
        """True while a connection is open and not known to be broken."""
        return self._conn is not None

    @property
    def is_test_driver(self) -> bool:
        """True for libvirt's test driver, whose free-memory and keepalive answers are not real."""
        return self.uri.startswith("test:")

    async def open(self) -> None:
        """Connect, enable keepalive where supported, and subscribe to lifecycle and close events."""
        events.ensure_event_thread()
        conn = await self.call(libvirt.open, self.uri, op="open", conn=None)
        self._conn = conn
        await self._subscribe(conn)

    async def _subscribe(self, conn: Any) -> None:
        """Keepalive plus the event callbacks, when a queue was given."""
        with contextlib.suppress(errors.TargetPermanent):  # test:// answers "unsupported"
            await self.call(conn.setKeepAlive, 5, 3, op="keepalive")
        if self._queue is None:
            return
        bridge = events.Bridge(self.uri, asyncio.get_running_loop(), self._queue)
        lifecycle = libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE
        cb_id = await self.call(
            conn.domainEventRegisterAny, None, lifecycle, bridge.on_lifecycle, None, op="subscribe"
        )
        self._callback_ids = [cb_id]
        await self.call(conn.registerCloseCallback, bridge.on_close, None, op="subscribe")

    async def close(self, step_seconds: float | None = None) -> None:
        """Deregister the event callbacks, then close, each step within `step_seconds` (default: timeout).

        Both steps run on threads of their own, not in the pool, so a pool full of stuck calls
        cannot delay them; a step that does not return in time is abandoned (its thread is a
        daemon) and reported as TargetTemporary once both steps had their chance. Errors from a
        connection that is already gone are ignored.
        """
        conn, self._conn = self._conn, None
        ids, self._callback_ids = self._callback_ids, []
        if conn is None:
            return
        limit = self.timeout if step_seconds is None else step_seconds
        deregistered = await finish_within(functools.partial(_deregister_quietly, conn, ids), limit)
        closed = await finish_within(functools.partial(_close_connection_quietly, conn), limit)
        if not (deregistered and closed):
            step = "callback deregistration" if not deregistered else "close"
            raise errors.TargetTemporary(f"close: {step} of {self.uri} did not return within {limit:g}s")

    def mark_broken(self) -> None:
        """Forget the connection after a close event or a ConnectionLost (objects from it are stale)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            closer = threading.Thread(
                target=_close_quietly, args=(conn, self._callback_ids), name="libvirt-close", daemon=True
            )
            closer.start()
        self._callback_ids = []

    async def reconnect(self, first_delay: float = 0.5, max_delay: float = 10.0) -> None:
        """Open again with exponential back-off until it works; the caller then reconciles."""
        self.mark_broken()
        delay = first_delay
        while True:
            try:
                await self.open()
            except errors.TargetError:
                await asyncio.sleep(delay)
                delay = min(max_delay, delay * 2)
                continue
            self._observer.reconnected(self.uri)
            return

    async def run(self, fn: Callable[..., T], *args: Any, op: str, seconds: float | None = None) -> T:
        """`fn(connection, *args)` in the pool; ConnectionLost when no connection is open."""
        conn = self._conn
        if conn is None:
            raise ConnectionLost(f"{op}: not connected to {self.uri}")
        until = None
        if self.fence is not None and op not in READ_ONLY_OPS:
            until = await self.fence.admit(op, self.uri)
        try:
            return await self.call(fn, conn, *args, op=op, seconds=seconds, conn=conn, until=until)
        except ConnectionLost:
            if self._conn is conn:
                self.mark_broken()
            raise

    async def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        op: str,
        seconds: float | None = None,
        conn: Any = None,
        until: float | None = None,
    ) -> T:
        """`fn(*args)` in the pool, timed, translated; returns None when the goal already held.

        `conn` is the connection the call uses, asked whether it is still alive when an error
        leaves that open (code 38); without one such an error means the link is lost. With
        `until` (a monotonic time), the worker refuses to start the call after it (Fenced).
        """
        started = time.monotonic()
        error_class: str | None = None
        try:
            limit = self.timeout if seconds is None else seconds
            return await self._in_pool(fn, args, op, limit, conn, until)
        except _AlreadyDoneError:
            return None  # type: ignore[return-value]
        except errors.TargetError as exc:
            error_class = exc.error_class
            raise
        finally:
            self._observer.libvirt_call(op, time.monotonic() - started, error_class)

    async def _in_pool(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        op: str,
        seconds: float,
        conn: Any,
        until: float | None = None,
    ) -> T:
        """Run in the pool; on timeout or cancellation, wait for the thread before raising.

        `asyncio.timeout`, not `wait_for`: on Python 3.11, `wait_for` returns the result and drops
        a cancellation that arrives as the call completes, and a task that ignores its
        cancellation hangs whoever waits for it (shutdown, for one).
        """
        context = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, _translated, context, fn, args, op, conn, until
        )
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.shield(future)
        except TimeoutError:
            await _drain(future)
            raise errors.TargetTemporary(f"{op}: no answer from {self.uri} within {seconds:g}s") from None
        except asyncio.CancelledError:
            await _drain(future)
            raise


def _translated(
    context: contextvars.Context,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    op: str,
    conn: Any,
    until: float | None = None,
) -> T:
    """Worker-thread side: run under the caller's context and translate libvirt errors.

    A fenced call whose proof of leadership ran out while it waited for a worker is not run.
    """
    if until is not None and time.monotonic() >= until:
        raise errors.Fenced(f"{op}: the proof of leadership ran out before the call could start")
    try:
        return context.run(fn, *args)
    except libvirt.libvirtError as exc:
        raise translate(exc, op, functools.partial(_alive, conn)) from exc


def _alive(conn: Any) -> bool:
    """Whether a connection still works (libvirt's own keepalive-backed answer); none is not."""
    if conn is None:
        return False
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


async def _drain(future: asyncio.Future[Any]) -> None:
    """Wait until the worker thread has returned, whatever it returned, even if cancelled again."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except Exception:  # noqa: S112 (the outcome is irrelevant; only completion matters)
            continue


def _close_quietly(conn: Any, callback_ids: list[int]) -> None:
    """Deregister callbacks and close a connection that may already be dead."""
    _deregister_quietly(conn, callback_ids)
    _close_connection_quietly(conn)


def _deregister_quietly(conn: Any, callback_ids: list[int]) -> None:
    """Remove our lifecycle and close callbacks, so no event reaches us during or after the close."""
    for cb_id in callback_ids:
        with contextlib.suppress(libvirt.libvirtError):
            conn.domainEventDeregisterAny(cb_id)
    if callback_ids:
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()


def _close_connection_quietly(conn: Any) -> None:
    """Close a connection that may already be dead."""
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()


async def finish_within(fn: Callable[[], object], seconds: float) -> bool:
    """Run `fn` on a daemon thread of its own; True if it returned within `seconds`, else False.

    Used only where waiting forever is worse than abandoning a thread: at shutdown.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        try:
            fn()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_resolve, done)

    threading.Thread(target=run, name="libvirt-shutdown", daemon=True).start()
    try:
        async with asyncio.timeout(seconds):
            await asyncio.shield(done)
    except TimeoutError:
        return False
    return True


def _resolve(future: asyncio.Future[None]) -> None:
    """Mark a waiter done unless it was given up already."""
    if not future.done():
        future.set_result(None)


async def shutdown_executor(executor: concurrent.futures.ThreadPoolExecutor, seconds: float) -> bool:
    """Shut the pool down: queued calls are cancelled, running ones get `seconds`, then are abandoned.

    Returns False when some worker was still busy at the deadline (the caller logs it).
    """
    executor.shutdown(wait=False, cancel_futures=True)
    return await finish_within(functools.partial(executor.shutdown, wait=True), seconds)
