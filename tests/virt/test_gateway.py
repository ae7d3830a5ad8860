"""The gateway against the test driver: error translation, idempotent codes, timeouts, contextvars."""

from __future__ import annotations

import asyncio
import contextvars
import pathlib
import threading
import time
from collections.abc import AsyncIterator

import libvirt
import pytest

from autoscaler import errors
from autoscaler.virt import gateway, ops
from tests.targets.hosts import RecordingObserver, host_uri, libvirt_error

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


@pytest.fixture
async def gw(tmp_path: pathlib.Path) -> AsyncIterator[gateway.Gateway]:
    executor = gateway.new_executor()
    opened = gateway.Gateway(host_uri(tmp_path), executor, observer=RecordingObserver())
    await opened.open()
    yield opened
    await opened.close()
    executor.shutdown(wait=True)


async def test_missing_domain_is_not_found(gw: gateway.Gateway) -> None:
    with pytest.raises(gateway.NotFound):
        await gw.run(ops.find_by_name, "nope", op="lookup")


async def test_already_done_codes_count_as_success(gw: gateway.Gateway) -> None:
    foreign = await gw.run(ops.find_by_name, "as-web-deadbeef", op="lookup")
    await gw.run(ops.destroy, foreign.uuid, op="destroy")
    assert await gw.run(ops.destroy, foreign.uuid, op="destroy") is None
    assert await gw.run(ops.shutdown, foreign.uuid, op="shutdown") is None
    with pytest.raises(errors.TargetError):
        await gw.run(ops.shutdown, foreign.uuid, op="other")  # the same code elsewhere is an error


async def test_invalid_xml_is_permanent(gw: gateway.Gateway) -> None:
    with pytest.raises(errors.TargetPermanent):
        await gw.run(ops.define, "<domain type='kvm'><name>x</name></domain>", op="define")


async def test_duplicate_name_is_conflict(gw: gateway.Gateway) -> None:
    text = await gw.run(ops.template_xml, "web-template", op="template")
    clash = text.replace("6695eb01-f6a4-8304-79aa-97f2502e193f", "6695eb01-f6a4-8304-79aa-97f2502e1940")
    with pytest.raises(errors.Conflict):
        await gw.run(ops.define, clash, op="define")


async def test_timeout_waits_for_the_thread_and_is_temporary(gw: gateway.Gateway) -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        finished.set()

    with pytest.raises(errors.TargetTemporary):
        await gw.call(slow, op="slow", seconds=0.05)
    assert finished.is_set()


async def test_cancel_does_not_orphan_the_thread(gw: gateway.Gateway) -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        finished.set()

    task = asyncio.create_task(gw.call(slow, op="slow"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


async def test_context_follows_into_the_worker(gw: gateway.Gateway) -> None:
    request_id.set("tick-7")
    assert await gw.call(request_id.get, op="ctx") == "tick-7"


async def test_calls_are_reported_with_error_class(tmp_path: pathlib.Path) -> None:
    observer = RecordingObserver()
    executor = gateway.new_executor()
    gw = gateway.Gateway(host_uri(tmp_path), executor, observer=observer)
    await gw.open()
    with pytest.raises(gateway.NotFound):
        await gw.run(ops.find_by_name, "nope", op="lookup")
    await gw.close()
    executor.shutdown(wait=True)
    assert ("open", None) in observer.calls
    assert ("lookup", "not_found") in observer.calls


async def test_closed_gateway_raises_connection_lost(gw: gateway.Gateway) -> None:
    gw.mark_broken()
    with pytest.raises(gateway.ConnectionLost):
        await gw.run(ops.list_domains, op="list")
    await gw.reconnect(first_delay=0.01)
    assert gw.connected


async def test_system_error_on_a_healthy_connection_keeps_it(gw: gateway.Gateway) -> None:
    # Code 38 from the driver itself (here: a file that cannot be read), not from the link.
    with pytest.raises(errors.TargetTemporary) as raised:
        await gw.run(lambda conn: conn.restore("/nonexistent/image"), op="restore")
    assert not isinstance(raised.value, gateway.ConnectionLost)
    assert gw.connected
    assert await gw.run(ops.list_domains, op="list")


def test_system_error_is_a_lost_connection_only_from_the_link_or_a_dead_connection() -> None:
    unlink = libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_STORAGE, "cannot unlink file")
    broken = libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC, "Cannot recv data")

    assert type(gateway.translate(unlink, "vol_delete", lambda: True)) is errors.TargetTemporary
    assert isinstance(gateway.translate(unlink, "vol_delete", lambda: False), gateway.ConnectionLost)
    assert isinstance(gateway.translate(broken, "list", lambda: True), gateway.ConnectionLost)


async def test_unreachable_uri_is_connection_lost() -> None:
    executor = gateway.new_executor()
    gw = gateway.Gateway("qemu+unix:///system?socket=/nonexistent/sock", executor)
    with pytest.raises(errors.TargetTemporary):
        await gw.open()
    executor.shutdown(wait=True)


async def _cancel_hops_after_the_call(gw: gateway.Gateway, hops: int) -> tuple[bool, asyncio.Task[None]]:
    """Run a call whose worker schedules a cancel `hops` loop callbacks later; (delivered, task)."""
    loop = asyncio.get_running_loop()
    delivered = False
    task: asyncio.Task[None]

    def cancel_after(remaining: int) -> None:
        nonlocal delivered
        if remaining:
            loop.call_soon(cancel_after, remaining - 1)
        else:
            delivered = task.cancel()

    def call(conn: object) -> int:
        del conn
        loop.call_soon_threadsafe(cancel_after, hops)
        return 1

    async def caller() -> None:
        await gw.run(call, op="probe")
        await asyncio.sleep(0)

    task = asyncio.create_task(caller())
    await asyncio.wait([task])
    return delivered, task


async def test_cancellation_arriving_as_a_call_completes_is_never_lost(gw: gateway.Gateway) -> None:
    # The cancel is scheduled from the worker thread, `hops` loop callbacks later, so over the sweep
    # it lands before, around and after the moment the call's result reaches the loop (wait_for on
    # 3.11 dropped it there). A delivered cancel must end the task cancelled; one that came too late
    # (the task already done) must leave its normal result.
    delivered_at: list[int] = []
    for hops in range(8):
        delivered, task = await _cancel_hops_after_the_call(gw, hops)
        if delivered:
            delivered_at.append(hops)
            assert task.cancelled(), f"a cancel delivered {hops} hops after the call was lost"
        else:
            assert task.result() is None
    assert delivered_at, "no hop count delivered the cancel before the task finished: nothing was tested"


async def test_finish_within_gives_up_on_a_stuck_call() -> None:
    release = threading.Event()
    started = time.monotonic()
    try:
        assert not await gateway.finish_within(release.wait, 0.1)
        assert time.monotonic() - started < 2.0
    finally:
        release.set()
    assert await gateway.finish_within(lambda: None, 1.0)


async def test_close_deregisters_and_returns_with_a_stuck_pool(tmp_path: pathlib.Path) -> None:
    executor = gateway.new_executor()
    queue: asyncio.Queue[object] = asyncio.Queue()
    opened = gateway.Gateway(host_uri(tmp_path), executor, queue=queue)  # type: ignore[arg-type]
    await opened.open()
    release = threading.Event()
    inside = threading.Semaphore(0)

    def hang(_conn: object) -> None:
        inside.release()
        release.wait()

    stuck = [asyncio.create_task(opened.run(hang, op="stuck")) for _ in range(gateway.MAX_WORKERS)]
    try:
        for _ in stuck:  # every worker is busy with a call that never returns by itself
            assert await asyncio.to_thread(inside.acquire, timeout=5.0)
        await opened.close(step_seconds=2.0)  # its steps run outside the full pool
        assert not opened.connected
        assert not await gateway.shutdown_executor(executor, 0.1)
    finally:
        release.set()
        await asyncio.gather(*stuck, return_exceptions=True)
