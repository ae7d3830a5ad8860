"""The gateway against the test driver: error translation, idempotent codes, timeouts, contextvars."""

from __future__ import annotations

import asyncio
import contextvars
import pathlib
import threading
import time
from collections.abc import AsyncIterator

import pytest

from autoscaler import errors
from autoscaler.virt import gateway, ops
from tests.targets.hosts import RecordingObserver, host_uri

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


async def test_unreachable_uri_is_connection_lost() -> None:
    executor = gateway.new_executor()
    gw = gateway.Gateway("qemu+unix:///system?socket=/nonexistent/sock", executor)
    with pytest.raises(errors.TargetTemporary):
        await gw.open()
    executor.shutdown(wait=True)
