"""The whole system: a real Prometheus scrapes the office-day load and the daemon; the daemon queries it
and scales real QEMU domains on a real libvirtd up on the morning ramp and down in the evening.

Asserted from three sides: libvirt's own list of domains, the daemon's /status, and the daemon's
own series as Prometheus scraped them; then every query of the Grafana dashboard runs against that
Prometheus and must show what the day produced. One compressed day takes about 80 seconds.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from autoscaler import settings
from autoscaler.demo import loadgen
from autoscaler.runtime import daemon
from tests.integration import dashboard, libvirt_env, prometheus_env

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.integration_prometheus, pytest.mark.slow]
GROUP = "it-web"
PREFIX = f"as-{GROUP}-"
DAY_SECONDS = 120.0
"""Five real seconds per office hour: the ramp takes 7.5 s, the whole day 2 minutes."""
DASHBOARD_WINDOW = "5m"
"""The dashboard's rate interval when its queries are checked: the whole run."""
QUIET_PANELS = {
    "Metric query errors / {{source}} {{error_class}}",
    "Metric query errors / {{group}}/{{check}} {{result}}",
    "libvirt calls (p95) and errors / {{op}} {{error_class}} errors/s",
    "Policies and capacity / {{file}} errors",
    "Policies and capacity / {{group}} capacity refusals",
    "Policies and capacity / {{group}} replaced: {{reason}}",
    "Forecast (predictive shadow mode) / {{group}} predicted",
    "Forecast (predictive shadow mode) / {{group}} error ratio",
}
"""Dashboard targets a good day need not fill: errors, refusals, replacements, forecasts (the
policy is not predictive). Every other target must show data after the day."""

POLICY = """\
group: {group}
golden: {golden}
template: {template}
pool: {pool}
min: 1
max: 5
evaluation_interval: 2s
warmup: 0s
checks:
  - name: sessions
    source: prometheus
    query: sum(webmail_active_sessions)
    strategy: {{kind: per_instance, per_instance: 100, tolerance: 0.05}}
    max_staleness: 30s
scale_up: {{cooldown: 2s, rate: {{instances: 4, period: 2s}}}}
scale_down: {{stabilization: 6s, cooldown: 4s, rate: {{instances: 2, period: 4s}}}}
readiness: {{interval: 1s, timeout: 2m}}
"""


@pytest.fixture(scope="module")
def libvirt_host() -> Iterator[libvirt_env.LibvirtEnv]:
    """A real libvirtd (reused when one answers) with a pool of our own and a golden image."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start libvirtd")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-e2e-"))
    workdir.chmod(0o755)
    pool = f"as-e2e-{os.getpid()}"
    with libvirt_env._kvm_permissions(), libvirt_env._daemons(workdir) as daemons:
        golden = libvirt_env._make_pool(workdir, pool)
        kind = libvirt_env.domain_type()
        template = workdir / "template.xml"
        template.write_text(libvirt_env.template_xml(kind, golden))
        try:
            yield libvirt_env.LibvirtEnv(libvirt_env.URI, workdir, pool, golden, str(template), kind, daemons)
        finally:
            libvirt_env._remove_leftover_domains(PREFIX)
            libvirt_env._remove_pool(pool)
            shutil.rmtree(workdir, ignore_errors=True)


def _list_running() -> list[str]:
    listing = subprocess.run(
        ["virsh", "-c", libvirt_env.URI, "list", "--name"], capture_output=True, text=True, check=True
    )
    return [name for name in listing.stdout.split() if name.startswith(PREFIX)]


async def running_domains() -> int:
    """How many of our group's domains run, as libvirt itself lists them (off the daemon's loop)."""
    return len(await asyncio.to_thread(_list_running))


async def until(predicate: object, deadline: float, what: str) -> None:
    """Poll `predicate` (sync or async) until true; fail naming `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > end:
            pytest.fail(f"{what} not reached within {deadline:.0f}s")
        await asyncio.sleep(0.5)


async def at_least(read: Callable[[], Awaitable[int]], count: int) -> bool:
    return await read() >= count


async def at_most(read: Callable[[], Awaitable[int]], count: int) -> bool:
    return await read() <= count


@dataclass
class World:
    """The running pieces of one end-to-end run."""

    runner: daemon.Daemon
    prometheus: prometheus_env.PrometheusServer
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        assert self.runner.http is not None
        assert self.runner.http.address is not None
        return "http://{}:{}".format(*self.runner.http.address)

    @property
    def instance(self) -> str:
        """The daemon's `instance` label, as Prometheus scrapes it."""
        return self.base.removeprefix("http://")

    async def status_current(self) -> int:
        async with self.http.get(self.base + "/status") as response:
            data = await response.json()
        groups = {g["group"]: g for g in data["groups"]}
        return int(groups[GROUP]["current"])

    async def scalar_if_any(self, query: str) -> float | None:
        """The one value `query` returns now, or None while Prometheus has no data for it."""
        result = (await self.prometheus.api("/api/v1/query", query=query))["result"]
        if not result:
            return None
        assert len(result) == 1, f"{query} returned {len(result)} series where one was expected: {result}"
        return float(result[0]["value"][1])

    async def scalar(self, query: str) -> float:
        """The one value `query` returns now; an empty result fails the test, never reads as zero."""
        value = await self.scalar_if_any(query)
        if value is None:
            pytest.fail(f"Prometheus has no data for {query}")
        return value

    async def positive(self, query: str) -> bool:
        """Whether `query` has data and its value is above zero (for polling)."""
        value = await self.scalar_if_any(query)
        return value is not None and value > 0


@pytest.fixture
async def world(
    tmp_path: pathlib.Path,
    libvirt_host: libvirt_env.LibvirtEnv,
    prometheus_server: prometheus_env.PrometheusServer,
) -> AsyncIterator[World]:
    generator = loadgen.LoadGenerator(day_seconds=DAY_SECONDS, start_hour=6.5)
    exporter = await generator.start()
    policies = tmp_path / "policies"
    policies.mkdir()
    text = POLICY.format(
        group=GROUP, golden=libvirt_host.golden, template=libvirt_host.template, pool=libvirt_host.pool
    )
    (policies / f"{GROUP}.yaml").write_text(text)
    config = settings.Settings(
        policies=(str(policies),),
        state_dir=str(tmp_path / "state"),
        http=settings.HttpSettings(port=prometheus_env.free_port()),
        sources={
            "prometheus": settings.PrometheusSettings(
                kind="prometheus", url=prometheus_server.url, timeout=5.0
            )
        },
        target=settings.TargetSettings(
            uris=(libvirt_host.uri,), memory_reserve_mib=256, reconcile_interval=30.0, shutdown_timeout=2.0
        ),
        engine=settings.EngineSettings(jitter=0.0, query_timeout=5.0, shutdown_grace=20.0),
    )
    runner = daemon.Daemon(config, registry=CollectorRegistry())
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(60):
            await runner.started.wait()
        exporter_address = exporter.removeprefix("http://").removesuffix("/metrics")
        prometheus_server.set_targets("e2e-load", [exporter_address])
        daemon_address = f"127.0.0.1:{config.http.port}"
        prometheus_server.set_targets("e2e-daemon", [daemon_address])
        await prometheus_server.wait_for_target(exporter_address)
        await prometheus_server.wait_for_target(daemon_address)  # its own series are asserted on
        async with aiohttp.ClientSession() as session:
            yield World(runner, prometheus_server, session)
    finally:
        runner.request_stop()
        assert await asyncio.wait_for(task, 60) == 0
        await generator.stop()
        prometheus_server.remove_targets("e2e-load")
        prometheus_server.remove_targets("e2e-daemon")
        await asyncio.to_thread(libvirt_env._remove_leftover_domains, PREFIX)


async def test_scales_real_domains_up_on_the_ramp_and_down_after_it(world: World) -> None:
    await until(lambda: at_least(running_domains, 4), 60, "4 running domains on the morning ramp")
    await until(lambda: at_least(world.status_current, 4), 20, "/status showing 4 members")
    await until(lambda: at_most(running_domains, 2), 100, "at most 2 domains in the evening")
    await until(lambda: at_most(world.status_current, 2), 20, "/status showing at most 2 members")
    peak = f'max_over_time(autoscaler_group_current_instances{{group="{GROUP}"}}[5m])'
    assert await world.scalar(peak) >= 4
    ups = f'autoscaler_scale_operations_total{{group="{GROUP}",direction="up",result="success"}}'
    downs = f'sum(autoscaler_scale_operations_total{{group="{GROUP}",direction="down",result="success"}})'
    assert await world.scalar(ups) >= 1
    await until(lambda: world.positive(downs), 10, "scale-in operations in Prometheus")

    shown = await dashboard.check(world.prometheus, world.instance, GROUP, DASHBOARD_WINDOW, QUIET_PANELS)
    assert len(shown) >= 15, shown
