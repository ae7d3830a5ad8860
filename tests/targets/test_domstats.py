"""The libvirt CPU source: empty until a rate is known, then the mean over ready members."""

from __future__ import annotations

import pathlib

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
