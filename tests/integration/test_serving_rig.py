"""Capacity that serves, for real: TCG clones behind HAProxy, scaled on the requests they report.

Inside the namespace rig (tests/integration/netns.py) run the daemon (`autoscaler run`), HAProxy
and Prometheus; Prometheus finds the clones only through the daemon's /v1/targets and the daemon
scales on the request rate the guests' own counters report, while a bounded load goes through
HAProxy. Asserted from each guest's own access log and from the clients: no load request reached
a guest before HAProxy had checked it, no request failed over the ramp, an HAProxy reload while
serving gets every server back, and a daemon killed (SIGKILL) while it drains a member finishes
that drain after its restart: the member's long request completes, then its domain goes.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import yaml

from autoscaler.serving import haproxy_process
from autoscaler.serving.runtime_api import RuntimeApi
from tests.integration import netns

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.integration_prometheus, pytest.mark.slow]
ROOT = pathlib.Path(__file__).resolve().parents[2]
GROUP = "srv"
LONG_MS = 12_000
"""A request that keeps a member busy through the daemon's restart (drain_timeout is longer)."""

POLICY = """group: srv
golden: GOLDEN
template: TEMPLATE
pool: POOL
min: 1
max: 2
evaluation_interval: 1s
warmup: 0s
checks:
  - name: rps
    source: prometheus
    query: sum(rate(guest_http_requests_total{group="srv"}[9s]))
    strategy: {kind: per_instance, per_instance: 1.5, tolerance: 0.1}
    max_staleness: 30s
scale_up: {cooldown: 2s, rate: {instances: 2, period: 2s}}
scale_down: {stabilization: 3s, cooldown: 2s, rate: {instances: 1, period: 2s}}
readiness: {probe: tcp, port: 80, interval: 2s, timeout: 150s, failures: 5}
discovery: {ports: [80]}
serving:
  port: 80
  balancers: [{kind: haproxy, socket: SOCKET, backend: web, check: {inter: 3s, rise: 1, fall: 3}}]
  launch_timeout: 150s
  drain_timeout: 30s
  retry_interval: 500ms
"""


class Daemon:
    """`autoscaler run` inside the namespace, configured for the served group."""

    def __init__(self, rig: netns.Rig, workdir: pathlib.Path, socket: str) -> None:
        self.rig = rig
        self.workdir = workdir
        self.port = rig.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: netns.Process | None = None
        self.runs = 0
        policies = workdir / "policies"
        policies.mkdir(parents=True)
        template = rig.write_template("as-srv-template")
        text = POLICY.replace("GOLDEN", str(rig.golden)).replace("TEMPLATE", str(template))
        (policies / "srv.yaml").write_text(text.replace("POOL", rig.pool).replace("SOCKET", socket))
        self.prometheus_port = rig.free_port()
        settings = {
            "policies": [str(policies)],
            "state_dir": str(workdir / "state"),
            "http": {"listen": "127.0.0.1", "port": self.port},
            "sources": {"prometheus": {"kind": "prometheus", "url": "PROMETHEUS", "timeout": "5s"}},
            "target": {"uris": [rig.inner_uri], "memory_reserve_mib": 0, "shutdown_timeout": "10s"},
            "engine": {"jitter": "0s", "policy_poll": "1s", "shutdown_grace": "10s"},
            "log": {"level": "info", "format": "json"},
        }
        self.settings = settings

    def configure(self, prometheus_url: str) -> None:
        self.settings["sources"]["prometheus"]["url"] = prometheus_url  # type: ignore[index]
        (self.workdir / "autoscaler.yaml").write_text(yaml.safe_dump(self.settings))

    async def start(self) -> None:
        self.runs += 1
        argv = [
            str(ROOT / ".venv" / "bin" / "autoscaler"),
            "run",
            "--config",
            str(self.workdir / "autoscaler.yaml"),
        ]
        env = {"PYTHONUNBUFFERED": "1"}  # its log is read while it runs
        self.process = self.rig.spawn(f"serving-daemon-{self.runs}", argv, env=env)
        await netns.wait_for(self._ready, 60.0, "the daemon ready")

    async def _ready(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            pytest.fail(f"the daemon exited:\n{self.process.tail()}")
        return (await self.rig.get(f"{self.url}/readyz"))[0] == 200

    async def members(self) -> list[dict[str, Any]]:
        status, body = await self.rig.get(f"{self.url}/status")
        assert status == 200, body
        groups = [g for g in json.loads(body)["groups"] if g["group"] == GROUP]
        return groups[0]["members"] if groups else []


@dataclass
class Load:
    """Bounded paced load through HAProxy, run in a thread inside the namespace."""

    url: str
    rate: float
    seconds: float
    cap: int
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    stopped: bool = False
    """Set from the test's thread: send nothing more, finish what is in flight."""

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        assert self.url.startswith("http://127.0.0.1:"), "the load goes to HAProxy in the namespace only"
        pending: set[asyncio.Task[None]] = set()
        end = time.monotonic() + self.seconds
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)
        ) as s:
            sent = 0
            while time.monotonic() < end and sent < self.cap and not self.stopped:
                sent += 1
                task = asyncio.create_task(self._one(s, f"{self.url}&load={sent}"))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(1.0 / self.rate)
            if pending:
                await asyncio.gather(*pending)

    async def _one(self, session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.get(url) as reply:
                await reply.read()
                if reply.status == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"{reply.status} {url}")
        except aiohttp.ClientError as exc:
            self.failed.append(f"{type(exc).__name__} {url}")


def _ready(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in members if m["state"] == "ready" and m["addresses"]]


async def _log_of(rig: netns.Rig, address: str) -> list[str]:
    status, body = await rig.get(f"http://{address}/requests")
    assert status == 200, body
    return body.splitlines()


def _checked_before_load(log: list[str]) -> bool:
    """In a guest's own access log, the first load request comes after HAProxy's first check."""
    paths = [line.split()[-1] for line in log if len(line.split()) >= 3]
    loads = [i for i, p in enumerate(paths) if "&load=" in p]
    checks = [i for i, p in enumerate(paths) if p == "/health"]
    return not loads or (bool(checks) and checks[0] < loads[0])


async def test_clones_behind_haproxy_scale_on_their_requests_and_drop_none(netns_rig: netns.Rig) -> None:
    rig = netns_rig
    workdir = rig.workdir / "serving-test"
    workdir.mkdir()
    socket = str(workdir / "haproxy.sock")
    front = rig.free_port()
    web = haproxy_process.backend("web")
    config = haproxy_process.config(socket, front, web, connect="3s", idle="60s", check="5s")
    (workdir / "haproxy.cfg").write_text(config)
    haproxy = rig.spawn("serving-haproxy", haproxy_process.command(workdir / "haproxy.cfg"))
    api = RuntimeApi(socket, 5.0)
    daemon = Daemon(rig, workdir, socket)
    job = (
        "  - job_name: srv-members\n    scrape_interval: 3s\n    scrape_timeout: 2500ms\n"
        f"    http_sd_configs: [{{url: '{daemon.url}/v1/targets', refresh_interval: 1s}}]\n"
    )
    prometheus = rig.start_prometheus(job, name="prometheus-serving")
    daemon.configure(prometheus.url)
    long_requests: list[Load] = []
    try:
        await daemon.start()
        started = time.monotonic()
        await netns.wait_for(lambda: _one_ready(daemon), 150.0, "the first clone serving")
        print(f"first clone serving {time.monotonic() - started:.1f}s after the daemon started")

        # Ramp up: the guests' request rate asks for a second member.
        ramp = Load(f"http://127.0.0.1:{front}/slow?ms=20", rate=2.0, seconds=200.0, cap=400)
        loading = asyncio.create_task(rig.call(ramp.run))
        both = await netns.wait_for(lambda: _n_ready(daemon, 2), 200.0, "two clones serving")
        print(f"two clones serving {time.monotonic() - started:.1f}s after the daemon started")
        ramp.stopped = True
        await loading
        assert ramp.failed == [], ramp.failed[:10]
        assert ramp.ok > 0
        for member in both:
            assert _checked_before_load(await _log_of(rig, member["addresses"][0])), member["name"]

        # An HAProxy reload drops every dynamic server: the daemon gives them back.
        haproxy.popen.send_signal(signal.SIGUSR2)
        await netns.wait_for(lambda: _all_up(api, 2), 30.0, "every server back after the reload")

        # Long requests on every member, no other load: the rate falls and the group shrinks. The
        # daemon is killed while it drains a busy member and restarted: the drain completes.
        long_requests = [Load(f"http://127.0.0.1:{front}/slow?ms={LONG_MS}", 100.0, 0.02, 2)]
        holding = asyncio.create_task(rig.call(long_requests[0].run))
        draining = await netns.wait_for(lambda: _draining(daemon), 60.0, "a member draining")
        assert daemon.process is not None
        daemon.process.kill()
        killed = time.monotonic()
        await daemon.start()
        await netns.wait_for(lambda: _n_members(daemon, 1), 120.0, "the group back at one member")
        await holding
        assert long_requests[0].failed == [], long_requests[0].failed
        assert long_requests[0].ok == 2
        assert draining not in rig.virsh("list", "--all", "--name").stdout.split()
        print(f"drain resumed and finished {time.monotonic() - killed:.1f}s after the daemon was killed")
        assert haproxy.alive()
    finally:
        for process in (daemon.process, haproxy):
            if process is not None:
                print(f"--- {process.name}:\n{_interesting(process.tail(400))}")
        if daemon.process is not None:
            daemon.process.stop()
        prometheus.process.stop()
        haproxy.stop()
        rig.remove_domains(f"as-{GROUP}-", volume_prefix=f"as-{GROUP}-")


def _interesting(log: str) -> str:
    """The daemon's decisions and serving events, for a failure message."""
    keep = (
        "decision",
        "member",
        "registration",
        "drain",
        "balancer",
        "hook",
        "replace",
        "error",
        "ALERT",
        "WARN",
    )
    return "\n".join(line[:300] for line in log.splitlines() if any(k in line for k in keep))[-6000:]


async def _one_ready(daemon: Daemon) -> list[dict[str, Any]] | None:
    ready = _ready(await daemon.members())
    return ready if len(ready) == 1 else None


async def _n_ready(daemon: Daemon, count: int) -> list[dict[str, Any]] | None:
    ready = _ready(await daemon.members())
    return ready if len(ready) == count else None


async def _n_members(daemon: Daemon, count: int) -> bool:
    return len(await daemon.members()) == count


async def _draining(daemon: Daemon) -> str | None:
    busy = [m for m in await daemon.members() if m["state"] == "draining"]
    return busy[0]["name"] if busy else None


async def _all_up(api: RuntimeApi, count: int) -> bool:
    stats = await api.stats("web")
    up = [s for s in stats.values() if re.fullmatch(r"as-srv-[0-9a-f]{8}", s.name) and s.status == "UP"]
    return len(up) == count
