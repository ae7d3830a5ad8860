"""The closed loop on loopback: the real daemon scales a served group on the request rate its members
report, Prometheus finds them through the daemon's /v1/targets, HAProxy balances a bounded ramp.

libvirt's test driver runs the domains and loopback HTTP servers answer for them (each one at the
address its domain is given, with its own request counter and a service that answers its health
check only a second after the first one, like a guest still starting). Asserted from the members'
side: no request reached a member before its service was healthy, no request failed over the
whole ramp (scale-in included), and members that served were drained and destroyed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from autoscaler import settings
from autoscaler.runtime import daemon
from autoscaler.targets import kvm
from autoscaler.targets.inventory import Record
from tests.integration import prometheus_env
from tests.serving import haproxy_env
from tests.serving.haproxy_env import Backend, HaproxyServer, wait_until
from tests.targets.hosts import fast_settings, host_uri

pytestmark = [pytest.mark.integration_prometheus, pytest.mark.slow]

POLICY = """\
group: web
golden: golden-web.qcow2
template: web-template
min: 1
max: 3
evaluation_interval: 1s
warmup: 0s
readiness: {{interval: 100ms, timeout: 30s}}
checks:
  - name: rps
    source: prometheus
    query: sum(rate(member_requests_total{{group="web"}}[4s]))
    strategy: {{kind: per_instance, per_instance: 15, tolerance: 0.1}}
    max_staleness: 30s
scale_up: {{cooldown: 1s, rate: {{instances: 4, period: 1s}}}}
scale_down: {{stabilization: 3s, cooldown: 2s, rate: {{instances: 1, period: 2s}}}}
discovery: {{ports: [{port}]}}
serving:
  port: {port}
  balancers: [{{kind: haproxy, socket: {socket}, backend: web, check: {{inter: 200ms, rise: 2}}}}]
  launch_timeout: 30s
  drain_timeout: 10s
  retry_interval: 200ms
"""

SD_CONFIG = """\
global: {{scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}}
scrape_configs:
  - job_name: members
    http_sd_configs: [{{url: "{url}", refresh_interval: 1s}}]
    # The test driver invents guest addresses (192.168.x); the daemon lists the registered
    # (loopback) one first, and this keeps Prometheus on loopback whatever it is given.
    relabel_configs:
      - {{source_labels: [__address__], regex: '127\\..*', action: keep}}
"""


class SdPrometheus(prometheus_env.PrometheusServer):
    """A Prometheus that finds its targets only through the daemon's http_sd endpoint."""

    def __init__(self, workdir: pathlib.Path, sd_url: str) -> None:
        super().__init__(workdir)
        self.sd_url = sd_url

    def start(self) -> None:
        config = self.workdir / "prometheus.yml"
        config.write_text(SD_CONFIG.format(url=self.sd_url))
        command = [
            prometheus_env.BINARY,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


@dataclass
class Addresses:
    """Gives each new domain the next loopback member (the target's address seam)."""

    free: list[Backend]
    by_name: dict[str, Backend] = field(default_factory=dict)
    by_uuid: dict[str, Backend] = field(default_factory=dict)

    async def __call__(self, record: Record) -> str | None:
        if record.uuid not in self.by_uuid:
            self.by_uuid[record.uuid] = self.by_name[record.name] = self.free.pop(0)
        return self.by_uuid[record.uuid].address


@dataclass
class Paced:
    """A bounded load at a changing rate: (requests per second, seconds) steps, a hard cap in total."""

    url: str
    steps: list[tuple[float, float]]
    cap: int
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    async def run(self) -> None:
        assert self.url.startswith("http://127."), "load goes to loopback only"
        sent = 0
        pending: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(force_close=True, limit=100)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20)) as s:
            for rate, seconds in self.steps:
                end = time.monotonic() + seconds
                while time.monotonic() < end and sent < self.cap:
                    sent += 1
                    task = asyncio.create_task(self._one(s))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    await asyncio.sleep(1.0 / rate)
            if pending:
                await asyncio.gather(*pending)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(self.url) as reply:
                await reply.read()
                if reply.status == 200:
                    self.ok += 1
                    return
                self.errors.append(str(reply.status))
        except aiohttp.ClientError as exc:
            self.errors.append(type(exc).__name__)
        self.failed += 1


@pytest.fixture
async def lb(tmp_path: pathlib.Path) -> AsyncIterator[HaproxyServer]:
    async for server in haproxy_env.haproxy_in(tmp_path):
        yield server


async def test_the_daemon_scales_a_served_group_on_its_request_rate_and_loses_nothing(
    tmp_path: pathlib.Path, lb: HaproxyServer
) -> None:
    members = await haproxy_env.start_backends(6)
    for member in members:
        member.boot = 1.0
    addresses = Addresses(list(members))
    policies = tmp_path / "policies"
    policies.mkdir()
    port = members[0].port
    (policies / "web.yaml").write_text(POLICY.format(port=port, socket=lb.socket))
    http_port = prometheus_env.free_port()
    config = settings.Settings(
        policies=(str(policies),),
        state_dir=str(tmp_path / "state"),
        http=settings.HttpSettings(port=http_port),
        sources={"prometheus": settings.PrometheusSettings(kind="prometheus", url="http://127.0.0.1:1")},
        engine=settings.EngineSettings(jitter=0.0, query_timeout=5.0, shutdown_grace=10.0),
    )
    prometheus = SdPrometheus(tmp_path / "prometheus", f"http://127.0.0.1:{http_port}/v1/targets")
    prometheus.workdir.mkdir(exist_ok=True)
    config = _with_prometheus(config, prometheus.url)
    target = kvm.KvmTarget(
        host_uri(tmp_path, memory_mib=8192),
        settings=fast_settings(balancer_interval=0.5, drain_poll=0.1),
        address_of=addresses,
    )
    runner = daemon.Daemon(config, target=target, registry=CollectorRegistry())
    task = asyncio.create_task(runner.run())
    prometheus.start()
    try:
        await asyncio.to_thread(prometheus.wait_ready)
        async with asyncio.timeout(30):
            await runner.started.wait()
        first = await _serving(target, 1)
        await prometheus.wait_for_target(f"{addresses.by_name[first[0]].address}:{port}")
        seen: dict[str, str] = {}
        sizes: list[int] = []
        watcher = asyncio.create_task(_watch(target, seen, sizes))
        load = Paced(f"{lb.url}/slow?s=0.1", [(8, 3), (45, 14), (4, 18)], cap=1200)
        await load.run()
        await wait_until(lambda: _settled(target), 30.0, "back to one member, nothing draining")
        watcher.cancel()
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 60)
        prometheus.stop()
        for member in members:
            await member.stop()

    assert load.failed == 0, load.errors[:10]
    assert max(sizes) >= 3, f"never scaled out to 3: {sorted(set(sizes))}"
    used = [m for m in members if m.served]
    assert len(used) >= 3
    for member in used:
        assert member.healthy_since is not None
        assert member.first_served_at is not None
        assert member.first_served_at >= member.healthy_since, (
            f"{member.address} served before it was healthy"
        )
    drained = [name for name, state in seen.items() if state == "draining" and addresses.by_name[name].served]
    assert drained, "no member that served was drained"


def _with_prometheus(config: settings.Settings, url: str) -> settings.Settings:
    source = settings.PrometheusSettings(kind="prometheus", url=url, timeout=5.0)
    return dataclasses.replace(config, sources={"prometheus": source})


async def _serving(target: kvm.KvmTarget, count: int) -> list[str]:
    async def ready() -> bool:
        return (await target.inventory("web")).ready == count

    await wait_until(ready, 20.0, f"{count} member(s) serving")
    return [i.name for i in (await target.inventory("web")).instances]


async def _watch(target: kvm.KvmTarget, seen: dict[str, str], sizes: list[int]) -> None:
    """Record each member's latest state and the group's sizes while the load runs."""
    while True:
        inventory = await target.inventory("web")
        sizes.append(inventory.ready)
        for instance in inventory.instances:
            if seen.get(instance.name) != "draining":
                seen[instance.name] = instance.state.value
        await asyncio.sleep(0.1)


async def _settled(target: kvm.KvmTarget) -> bool:
    inventory = await target.inventory("web")
    return len(inventory.instances) == 1 and inventory.ready == 1
