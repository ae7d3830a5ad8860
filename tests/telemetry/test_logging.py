"""JSON log lines carry the tick context; EdgeLog logs a failure once when it begins and once when it ends."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from autoscaler.telemetry import logging as tlog


@pytest.fixture
def restored_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_json_lines_with_tick_context(restored_structlog: None) -> None:
    out = io.StringIO()
    tlog.configure("info", stream=out)
    log = structlog.get_logger()
    with tlog.tick_context("web", 7):
        log.info("scale_out_started", count=2)
    log.debug("not_shown")
    log.warning("outside_tick")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "scale_out_started"
    assert (first["group"], first["tick_id"], first["count"], first["level"]) == ("web", 7, 2, "info")
    assert "timestamp" in first
    assert second["event"] == "outside_tick"
    assert "group" not in second


def test_exceptions_render_as_structured_json(restored_structlog: None) -> None:
    out = io.StringIO()
    tlog.configure("debug", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("handler_crashed")
    line = json.loads(out.getvalue())
    assert line["exception"][0]["exc_type"] == "RuntimeError"


def test_console_mode(restored_structlog: None) -> None:
    out = io.StringIO()
    tlog.configure("info", json=False, stream=out)
    structlog.get_logger().info("hello", group="web")
    assert "hello" in out.getvalue()
    assert "group=web" in out.getvalue()


async def test_tick_context_is_task_local(restored_structlog: None) -> None:
    out = io.StringIO()
    tlog.configure("info", stream=out)

    async def tick(group: str) -> None:
        with tlog.tick_context(group, 1):
            await asyncio.sleep(0)
            structlog.get_logger().info("tick")

    await asyncio.gather(tick("web"), tick("db"))
    assert sorted(json.loads(line)["group"] for line in out.getvalue().splitlines()) == ["db", "web"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_edge_log_logs_edges_and_counts_repeats() -> None:
    clock = FakeClock()
    edge = tlog.EdgeLog(clock=clock)
    with capture_logs() as logs:
        assert edge.failed("source:prometheus", "unavailable", url="http://127.0.0.1:9090")
        for _ in range(5):
            assert not edge.failed("source:prometheus", "unavailable")
        clock.now = 130.0
        assert edge.recovered("source:prometheus")
        assert not edge.recovered("source:prometheus")
    assert [entry["event"] for entry in logs] == ["failure_began", "failure_recovered"]
    began, recovered = logs
    assert (began["key"], began["error_class"], began["log_level"]) == (
        "source:prometheus",
        "unavailable",
        "warning",
    )
    assert began["url"] == "http://127.0.0.1:9090"
    assert (recovered["repeats"], recovered["failed_for_seconds"]) == (5, 30.0)


def test_edge_log_new_error_class_is_a_new_edge() -> None:
    edge = tlog.EdgeLog()
    with capture_logs() as logs:
        edge.failed("check:web/rps", "unavailable")
        edge.failed("check:web/rps", "query")
        edge.failed("check:db/rps", "query")
    assert [(e["key"], e["error_class"]) for e in logs] == [
        ("check:web/rps", "unavailable"),
        ("check:web/rps", "query"),
        ("check:db/rps", "query"),
    ]
    assert logs[1]["previous_error_class"] == "unavailable"
    assert edge.failing() == {"check:web/rps": "query", "check:db/rps": "query"}


def test_recovering_what_never_failed_logs_nothing() -> None:
    with capture_logs() as logs:
        assert not tlog.EdgeLog().recovered("libvirt")
    assert logs == []
