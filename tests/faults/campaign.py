"""A fault campaign against a real daemon process on a real libvirtd, as a hostile operator runs it.

The daemon runs as `python -m autoscaler run` over a private policy directory, state directory,
port and exporter (127.0.0.1); its group clones real QEMU domains in a pool of the rig's own.
Foreign objects share the pool: volumes named exactly like our overlays (one detached, one the
disk of a running foreign domain, one of a shut-off one) and a foreign domain named like ours.

Faults: SIGKILL of the daemon at seeded delays after a scale-out or scale-in is seen to begin
(a new overlay of ours appears, a member turns draining), then a restart that must converge;
metric-source faults (HTTP 500, garbage, 20 MB, a hang) during which no member may go; bad policy
files (at a reload and at a restart) and hostile HTTP requests. Every figure of the table comes
from observing libvirt and the daemon's output, never from the daemon's own account.

`tests/faults/test_campaign.py` runs a bounded, seeded set in `make test`; `bench/faults.py` the
full one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import random
import signal
import socket
import sys
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import libvirt
from aiohttp import web

from autoscaler.demo import host as demo_host
from autoscaler.virt import xml

GROUP = "flt"
PER_INSTANCE = 10
REPO = Path(__file__).resolve().parents[2]
ROLLOUT = 90.0
"""Longest wait for the daemon to converge after a restart (seconds)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class Tally:
    """What the campaign found; the last four must stay 0."""

    kill_points: int = 0
    survived: int = 0
    libvirtd_restarts: int = 0
    source_faults: int = 0
    bad_policies: int = 0
    http_requests: int = 0
    orphans: int = 0
    foreign_touched: int = 0
    scale_ins_on_missing: int = 0
    tracebacks: int = 0
    max_convergence: float = 0.0
    peak_rss_mib: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)


class Exporter:
    """The group's metric page on 127.0.0.1: `sessions <value>`, or a fault."""

    def __init__(self) -> None:
        self.value = float(PER_INSTANCE)
        self.mode = "ok"
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/metrics"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _page(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "error":
            return web.Response(status=500, text="internal error")
        if self.mode == "garbage":
            return web.Response(body=b"\x00\xff{not an exposition", content_type="text/plain")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "huge":
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            chunk = b"".join(b'filler{i="%d"} 1\n' % i for i in range(2000))
            with contextlib.suppress(ConnectionError):
                for _ in range(20 * 1024 * 1024 // len(chunk)):
                    await response.write(chunk)
                await response.write_eof()
            return response
        return web.Response(text=f"# TYPE sessions gauge\nsessions {self.value}\n", content_type="text/plain")

    def demand(self, instances: int) -> None:
        self.value = float(instances * PER_INSTANCE)


@dataclasses.dataclass(frozen=True)
class Seen:
    """One look at the pool and the domains."""

    ours: dict[str, tuple[str, str]]
    """Our domains of the group: name -> (phase, run state)."""
    overlays: dict[str, str]
    """Our domains' overlay volume names -> domain name."""
    volumes: set[str]


class Rig:
    """The daemon, its host, its exporter and the foreign objects it must never touch."""

    def __init__(
        self, host: demo_host.DemoHost, work: Path, seed: int, say: Callable[[str], None] | None = None
    ) -> None:
        self.say = say or (lambda _line: None)
        self.host = host
        self.work = work
        self.random = random.Random(seed)
        self.exporter = Exporter()
        self.tally = Tally()
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.log = work / "daemon.log"
        self.policies = work / "policies"
        self.conn: Any = None
        self.foreign_files: dict[str, tuple[int, str]] = {}
        self.foreign_domains: dict[str, str] = {}
        self.lookalikes: set[str] = set()
        self.count = 1

    # --- set-up and tear-down -----------------------------------------------------------------

    async def setup(self) -> None:
        libvirt.registerErrorHandler(lambda _context, _error: None, None)  # errors are raised, not printed
        self.conn = await asyncio.to_thread(libvirt.open, self.host.uri)
        await self.exporter.start()
        self.policies.mkdir(parents=True, exist_ok=True)
        (self.policies / "flt.yaml").write_text(self._policy())
        (self.work / "settings.yaml").write_text(self._settings())
        await asyncio.to_thread(self._make_foreign)

    async def teardown(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self.exporter.close()
        if self.conn is not None:
            await asyncio.to_thread(self._remove_everything)
            await asyncio.to_thread(self.conn.close)

    def _policy(self) -> str:
        return f"""\
group: {GROUP}
golden: {self.host.golden}
template: {self.host.template}
pool: {self.host.pool}
min: 1
max: 6
evaluation_interval: 1s
warmup: 0s
checks:
  - name: sessions
    source: exp
    query: sessions
    strategy: {{kind: per_instance, per_instance: {PER_INSTANCE}, tolerance: 0}}
    max_staleness: 10s
    on_missing: hold
scale_up: {{cooldown: 0s, rate: {{instances: 6, period: 1s}}}}
scale_down: {{stabilization: 0s, cooldown: 0s, rate: {{instances: 6, period: 1s}}}}
readiness: {{timeout: 2m}}
"""

    def _settings(self) -> str:
        return f"""\
policies: [{self.policies}]
state_dir: {self.work / "state"}
http: {{listen: 127.0.0.1, port: {self.port}}}
sources:
  exp: {{kind: exporter, url: "{self.exporter.url}", timeout: 1s, min_rate_window: 1s}}
target:
  uris: ["{self.host.uri}"]
  memory_reserve_mib: 0
  reconcile_interval: 3s
  shutdown_timeout: 1s
  orphan_grace: 1s
  stuck_create_grace: 1s
engine:
  {{jitter: 0s, policy_poll: 1s, query_timeout: 2s, shutdown_grace: 5s, backoff_initial: 1s, backoff_max: 2s}}
limits: {{response_bytes: 1048576}}
log: {{level: info, format: json}}
"""

    def _make_foreign(self) -> None:
        """Look-alike volumes (detached, used by a running and by a shut-off foreign domain) and a
        foreign domain named like ours; their fingerprints are taken once everything runs."""
        pool = self.conn.storagePoolLookupByName(self.host.pool)
        golden = self.conn.storageVolLookupByPath(self._golden_path()) if self._golden_path() else None
        capacity = golden.info()[1] if golden is not None else 64 * 1024 * 1024
        paths = {}
        for role in ("detached", "running", "shutoff"):
            name = xml.overlay_name(GROUP, str(uuidlib.uuid4()))
            volume = xml.volume_xml(name, capacity, self._golden_path(), "qcow2")
            paths[role] = pool.createXML(volume, 0).path()
            self.lookalikes.add(name)
        template = Path(self.host.template).read_text()
        for role, name in (("running", "as-flt-deadbeef"), ("shutoff", "as-flt-deadbee0")):
            domain = template.replace(f"<name>{_name_of(template)}</name>", f"<name>{name}</name>")
            domain = domain.replace(
                f"<source file='{self._golden_path()}'/>", f"<source file='{paths[role]}'/><readonly/>"
            )
            dom = self.conn.defineXML(domain)
            if role == "running":
                dom.create()
            self.foreign_domains[name] = role
        self.foreign_files = {path: _fingerprint(path) for path in paths.values()}

    def _golden_path(self) -> str:
        golden = self.host.golden
        if golden.startswith("/"):
            return golden
        return str(self.conn.storagePoolLookupByName(self.host.pool).storageVolLookupByName(golden).path())

    def _remove_everything(self) -> None:
        for dom in self.conn.listAllDomains(0):
            ours = _owner(dom) is not None
            if ours or dom.name() in self.foreign_domains:
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
        with contextlib.suppress(libvirt.libvirtError):
            pool = self.conn.storagePoolLookupByName(self.host.pool)
            pool.refresh(0)
            for volume in pool.listAllVolumes(0):
                if volume.name().startswith(f"as-{GROUP}-"):
                    with contextlib.suppress(libvirt.libvirtError):
                        volume.delete(0)

    # --- the daemon ---------------------------------------------------------------------------

    async def start_daemon(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "autoscaler",
                "run",
                "--config",
                str(self.work / "settings.yaml"),
                stdout=out,
                stderr=out,
                cwd=REPO,
                env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
            )

    async def kill_daemon(self) -> None:
        assert self.process is not None
        self._record_rss()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop_daemon(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self._record_rss()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            await self.kill_daemon()

    def _record_rss(self) -> None:
        assert self.process is not None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.tally.peak_rss_mib = max(self.tally.peak_rss_mib, int(line.split()[1]) / 1024)

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    # --- observing ----------------------------------------------------------------------------

    async def seen(self) -> Seen:
        return await asyncio.to_thread(self._seen)

    def _seen(self) -> Seen:
        ours: dict[str, tuple[str, str]] = {}
        overlays: dict[str, str] = {}
        for dom in self.conn.listAllDomains(0):
            try:
                owner = _owner(dom)
                if owner is None or owner.group != GROUP:
                    continue
                ours[dom.name()] = (owner.phase.value, "running" if dom.isActive() else "shutoff")
                overlays[xml.overlay_name(GROUP, dom.UUIDString())] = dom.name()
            except libvirt.libvirtError:
                continue  # it went away between the listing and the look
        pool = self.conn.storagePoolLookupByName(self.host.pool)
        volumes = set()
        for volume in pool.listAllVolumes(0):
            with contextlib.suppress(libvirt.libvirtError):
                volumes.add(volume.name())
        return Seen(ours, overlays, volumes)

    def _converged(self, seen: Seen) -> bool:
        settled = all(phase == "active" and run == "running" for phase, run in seen.ours.values())
        ours = {v for v in seen.volumes if v.startswith(f"as-{GROUP}-")} - self.lookalikes
        return settled and len(seen.ours) == self.count and ours == set(seen.overlays)

    async def converge(self, deadline: float = ROLLOUT) -> float:
        """Seconds until the host shows exactly `count` active members and no stray volume."""
        started = time.monotonic()
        while True:
            seen = await self.seen()
            if self._converged(seen):
                return time.monotonic() - started
            if time.monotonic() - started > deadline or not self.alive():
                state = "exited" if not self.alive() else "running"
                raise AssertionError(f"not converged to {self.count} (daemon {state}): {seen.ours}")
            await asyncio.sleep(0.1)

    async def wait_until(self, predicate: Callable[[Seen], bool], deadline: float = 30.0) -> bool:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if predicate(await self.seen()):
                return True
            await asyncio.sleep(0.02)
        return False

    def orphans(self, seen: Seen) -> int:
        ours = {v for v in seen.volumes if v.startswith(f"as-{GROUP}-")} - self.lookalikes
        return len(ours - set(seen.overlays))

    async def foreign_touched(self) -> int:
        return await asyncio.to_thread(self._foreign_touched)

    def _foreign_touched(self) -> int:
        touched = sum(
            1 for path, print_ in self.foreign_files.items() if _fingerprint_or_none(path) != print_
        )
        for name, role in self.foreign_domains.items():
            try:
                dom = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                touched += 1
                continue
            if bool(dom.isActive()) != (role == "running") or _owner(dom) is not None:
                touched += 1
        return touched

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback") if self.log.exists() else 0

    # --- faults -------------------------------------------------------------------------------

    async def kill_point(self, direction: str, step: int = 2) -> None:
        """Change the demand by `step`, SIGKILL once the change is seen under way (after a seeded
        delay), restart, and require convergence with nothing foreign touched."""
        before = await self.seen()
        self.count = min(6, self.count + step) if direction == "out" else max(1, self.count - step)
        delay = self.random.uniform(0.0, 1.5)
        known = set(before.volumes)

        def begun(seen: Seen) -> bool:
            if direction == "out":
                return bool({v for v in seen.volumes if v.startswith(f"as-{GROUP}-")} - known)
            return any(phase == "draining" for phase, _run in seen.ours.values())

        self.exporter.demand(self.count)
        self.tally.kill_points += 1
        point = f"scale-{direction} to {self.count}, kill {delay:.2f}s after it began"
        if not await self.wait_until(begun):
            self.tally.failures.append(f"{point}: never began")
            self.say(f"FAILED {point}: never began")
            return
        await asyncio.sleep(delay)
        await self.kill_daemon()
        await self.start_daemon()
        await self._after(point)

    async def _after(self, point: str) -> None:
        try:
            took = await self.converge()
        except AssertionError as exc:
            self.tally.failures.append(f"{point}: {exc}")
            self.say(f"FAILED {point}: {exc}")
            return
        self.say(f"{point}: converged in {took:.1f}s")
        self.tally.max_convergence = max(self.tally.max_convergence, took)
        seen = await self.seen()
        orphans, touched = self.orphans(seen), await self.foreign_touched()
        self.tally.orphans = max(self.tally.orphans, orphans)
        self.tally.foreign_touched = max(self.tally.foreign_touched, touched)
        if orphans == 0 and touched == 0:
            self.tally.survived += 1
        else:
            self.tally.failures.append(f"{point}: {orphans} orphans, {touched} foreign objects touched")

    async def source_fault(self, mode: str, seconds: float) -> None:
        """A failing source for `seconds` while the true demand would shrink the group: no member
        may go (on_missing: hold); afterwards the demand is as before."""
        self.tally.source_faults += 1
        members = (await self.seen()).ours
        self.exporter.mode = mode
        self.exporter.demand(1)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            seen = await self.seen()
            if len(seen.ours) < len(members) or any(p == "draining" for p, _r in seen.ours.values()):
                self.tally.scale_ins_on_missing += 1
                self.tally.failures.append(f"source fault {mode}: a member went while data was missing")
                break
            await asyncio.sleep(0.1)
        self.exporter.demand(self.count)
        self.exporter.mode = "ok"

    async def bad_policy(self, name: str, content: bytes, restart: bool) -> None:
        """A hostile file next to the good one: at a reload (SIGHUP) or at a (kill -9) restart,
        the daemon stays up and keeps managing the good group."""
        self.tally.bad_policies += 1
        path = self.policies / f"zz-{name}.yaml"
        path.write_bytes(content)
        if restart:
            await self.kill_daemon()
            await self.start_daemon()
        else:
            assert self.process is not None
            self.process.send_signal(signal.SIGHUP)
        self.count = min(6, self.count + 1)
        self.exporter.demand(self.count)
        await self._after(f"bad policy {name} ({'restart' if restart else 'reload'})")
        path.unlink()

    async def http_inputs(self) -> None:
        """Hostile requests: every one answered below 500 (or refused), the daemon healthy after."""
        base = f"http://127.0.0.1:{self.port}"
        requests = [
            ("GET", "/explain/%00%ff"),
            ("GET", "/explain/" + "a" * 5000),
            ("GET", "/v1/decisions?group=%ff&limit=-1"),
            ("GET", "/v1/decisions?limit=99999999999999999999"),
            ("POST", "/reload"),
            ("POST", "/groups/..%2f..%2fetc/pause"),
            ("POST", "/groups/flt/pause?reason=" + "x" * 10000),
            ("GET", "/status?" + "&".join(f"k{i}=v" for i in range(2000))),
            ("DELETE", "/status"),
        ]
        async with aiohttp.ClientSession() as session:
            await self._wait_healthy(session, base)
            for method, path in requests:
                self.tally.http_requests += 1
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.request(
                        method, base + path, headers={"Authorization": "Bearer x"}
                    ) as r:
                        if r.status >= 500:
                            self.tally.failures.append(f"HTTP {method} {path[:40]}: {r.status}")
            self.tally.http_requests += 1
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"\x00\xff GARBAGE \r\n" + b"X" * 70000 + b"\r\n\r\n")
                await writer.drain()
                with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                    await asyncio.wait_for(reader.read(100), 5)
                writer.close()
            await self._wait_healthy(session, base)

    async def _wait_healthy(self, session: aiohttp.ClientSession, base: str) -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(base + "/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        self.tally.failures.append("daemon not healthy")

    async def restart_libvirtd(self, restart: Callable[[], Any]) -> None:
        """Restart libvirtd (QEMU keeps running); the daemon reconnects and converges."""
        self.tally.libvirtd_restarts += 1
        await asyncio.to_thread(self.conn.close)
        await restart()
        self.conn = await asyncio.to_thread(libvirt.open, self.host.uri)
        self.count = max(1, self.count - 1)
        self.exporter.demand(self.count)
        await self._after("libvirtd restart")

    async def finish(self) -> Tally:
        await self.stop_daemon()
        self.tally.tracebacks = self.tracebacks()
        self.tally.foreign_touched = max(self.tally.foreign_touched, await self.foreign_touched())
        return self.tally


BAD_POLICIES: dict[str, bytes] = {
    "nul": b"group: zz\x00\n",
    "deep": b"group: zz\nx: " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "latin1": "group: z\xe9\n".encode("latin-1"),
    "bomb": b"a: &a [x,x,x,x,x,x,x,x,x]\n"
    + b"".join(b"%c: &%c [" % (c, c) + b",".join([b"*%c" % (c - 1)] * 9) + b"]\n" for c in b"bcdefg"),
}


def _name_of(domain_xml: str) -> str:
    return domain_xml.split("<name>", 1)[1].split("</name>", 1)[0]


def _owner(dom: Any) -> xml.Ownership | None:
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml.NAMESPACE, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise
    return xml.parse_metadata(text)


def _fingerprint(path: str) -> tuple[int, str]:
    with open(path, "rb") as handle:
        return os.fstat(handle.fileno()).st_ino, hashlib.file_digest(handle, "sha256").hexdigest()


def _fingerprint_or_none(path: str) -> tuple[int, str] | None:
    try:
        return _fingerprint(path)
    except OSError:
        return None


async def run(
    host: demo_host.DemoHost,
    work: Path,
    *,
    seed: int,
    kill_points: int,
    source_faults: list[str],
    bad_policies: list[tuple[str, bool]],
    libvirtd_restarts: int = 0,
    restart_libvirtd: Callable[[], Any] | None = None,
    fault_seconds: float = 4.0,
    say: Callable[[str], None] | None = None,
    http_again: bool = True,
    step: int = 2,
) -> Tally:
    """The campaign on a real libvirt host (a pool with a golden image and a template file)."""
    rig = Rig(host, work, seed, say)
    try:
        await rig.setup()
        await rig.start_daemon()
        rig.exporter.demand(rig.count)
        rig.tally.max_convergence = await rig.converge()
        await rig.http_inputs()
        for index in range(kill_points):
            if rig.count >= 5:
                direction = "in"
            elif rig.count <= 2:
                direction = "out"
            else:
                direction = rig.random.choice(["out", "in"])
            await rig.kill_point(direction, step)
            if index < len(source_faults):
                await rig.source_fault(source_faults[index], fault_seconds)
            if index < len(bad_policies):
                name, restart = bad_policies[index]
                await rig.bad_policy(name, BAD_POLICIES[name], restart)
            if restart_libvirtd is not None and index < libvirtd_restarts:
                await rig.restart_libvirtd(restart_libvirtd)
        if http_again:  # once more, after all the restarts
            await rig.http_inputs()
        return await rig.finish()
    finally:
        await rig.teardown()
