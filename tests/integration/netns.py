"""The namespace rig for tests: the demo's own rig (autoscaler/demo/netns.py), plus pytest's ways out.

One rig, one code path: the tests and `autoscaler demo --mode served` start the same `Rig`. Here a
machine that cannot hold one skips (fails under AUTOSCALER_REQUIRE_INTEGRATION, see
test_no_silent_skips.py), and `wait_for` fails the test when its condition never comes.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from autoscaler.demo.netns import (
    GATEWAY,
    NETWORK,
    SUBNET,
    Process,
    Prometheus,
    Rig,
    RigUnavailable,
    guest_template_xml,
    http_get,
)

__all__ = [
    "GATEWAY",
    "NETWORK",
    "SUBNET",
    "Process",
    "Prometheus",
    "Rig",
    "guest_template_xml",
    "http_get",
    "start",
    "wait_for",
]


def start(workdir: pathlib.Path) -> Rig:
    """A running rig in `workdir` (removed with all it holds if pytest is killed), or a skip."""
    try:
        return Rig.start(workdir, scratch=workdir)
    except RigUnavailable as exc:
        pytest.skip(str(exc))


async def wait_for(check: Callable[[], Any], deadline: float, what: str, every: float = 0.2) -> Any:
    """Await `check()` (sync or async) until it returns something truthy; fail after `deadline` s."""
    end = time.monotonic() + deadline
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    pytest.fail(f"{what}: not within {deadline}s (last: {last!r})")
