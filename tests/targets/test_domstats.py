"""The libvirt CPU source: empty until a rate is known, then the mean over ready members."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

from autoscaler import errors
from autoscaler.sources import domstats
from autoscaler.targets import kvm
from tests.targets.hosts import eventually, fast_settings, host_uri, web_policy


async def test_cpu_is_empty_first_then_a_utilisation(tmp_path: pathlib.Path) -> None:
    target = kvm.KvmTarget(
        host_uri(tmp_path), settings=fast_settings(stats_interval=3600.0), policies=[web_policy()]
    )
    await target.start()
    try:
        source = domstats.DomainStatsSource(target)
        assert await source.query("web:cpu", 0.0) == ()
        await target.scale_out(web_policy(), 2)
        await eventually(lambda: all(r.owner.ready for r in target._cache.group("web")))
        # A member's first reading gives no rate (the background loop may have taken it already),
        # so at most two queries are needed before a utilisation appears.
        samples = await source.query("web", 0.0) or await source.query("web:cpu", 0.0)
        assert len(samples) == 1
        assert 0.0 <= samples[0].value <= 1.0
    finally:
        await target.close()


async def test_unknown_metric_is_a_query_error(tmp_path: pathlib.Path) -> None:
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings())
    with pytest.raises(errors.QueryError):
        await domstats.DomainStatsSource(target).query("web:disk", 0.0)


async def test_readings_closer_than_the_window_keep_the_last_load(tmp_path: pathlib.Path) -> None:
    settings = fast_settings(stats_interval=3600.0, min_cpu_window=0.5)
    target = kvm.KvmTarget(host_uri(tmp_path), settings=settings, policies=[web_policy()])
    await target.start()
    try:
        await target.scale_out(web_policy(), 1)
        await eventually(lambda: all(r.owner.ready for r in target._cache.group("web")))
        assert await target.refresh_load("web") is None  # the baseline
        assert await target.refresh_load("web") is None  # milliseconds later: no rate from that

        computed = await first_load(target, deadline=5.0)
        [member] = target._cache.members("web")
        load = member.load

        assert await target.refresh_load("web") == computed  # too soon again: the same load answers
        assert member.load == load
    finally:
        await target.close()


async def first_load(target: kvm.KvmTarget, deadline: float) -> float:
    """Read until a load has been computed (once the window has passed), failing after `deadline`."""
    end = time.monotonic() + deadline
    while (computed := await target.refresh_load("web")) is None:
        if time.monotonic() > end:
            raise AssertionError(f"no load within {deadline}s")
        await asyncio.sleep(0.02)
    return computed
