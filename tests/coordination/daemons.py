"""Real daemon processes for the coordination tests and the failover benchmark.

Each daemon is `python -m autoscaler run` with its own settings, state directory, HTTP port and
JSON log file; all share one policy directory, the etcd cluster and the private libvirtd hosts.
Actions are counted from two sides: the daemons' own `action_admitted` log lines (one per
mutating libvirt call that passed the fence) and libvirt's list of domains.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

from tests.coordination import rig

GROUP = "ha-web"
PREFIX = f"as-{GROUP}-"
POLICY = """\
group: {group}
golden: golden.qcow2
template: {template}
pool: as-pool
min: {size}
max: {size}
evaluation_interval: 1s
warmup: 0s
checks: []
scale_up: {{cooldown: {step}s, rate: {{instances: 1, period: {step}s}}}}
scale_down: {{stabilization: 0s, cooldown: 0s, rate: {{instances: 8, period: 1s}}}}
"""


@dataclasses.dataclass
class Daemon:
    """One daemon process."""

    name: str
    workdir: pathlib.Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / f"{self.name}.log"

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log lines (of one event, when given)."""
        found: list[dict[str, Any]] = []
        if not self.log.exists():
            return found
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                found.append(record)
        return found

    def actions(self) -> int:
        """Mutating libvirt calls this daemon made (each one passed the fence)."""
        return len(self.events("action_admitted"))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        """An operator request, with the bearer token every daemon of the cluster shares."""
        token = (self.workdir / "operator-token").read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body or {}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def group(self) -> dict[str, Any]:
        """The group's /status entry."""
        status = self.status()
        assert status is not None, f"daemon {self.name} does not answer"
        found: dict[str, Any] = status["groups"][0]
        return found

    def status(self) -> dict[str, Any] | None:
        code, body = self.get("/status")
        return json.loads(body) if code == 200 else None

    def leading(self) -> bool:
        status = self.status()
        return bool(status and status["coordination"] and status["coordination"]["leading"])

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, number)

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclasses.dataclass
class Cluster:
    """Daemons sharing policies, etcd and hosts."""

    workdir: pathlib.Path
    etcd: rig.EtcdCluster
    hosts: list[rig.Host]
    prefix: str
    ttl: int = 3
    host_dead_after: float = 4.0
    coordination: str = ""
    """More `coordination:` settings, one `key: value` per line (indented like the others)."""
    daemons: dict[str, Daemon] = dataclasses.field(default_factory=dict)

    @property
    def policies(self) -> pathlib.Path:
        return self.workdir / "policies"

    def set_size(self, size: int, step: float = 1.0) -> None:
        """Write the group's policy with `min: size`, growing by one member per `step` seconds
        (the daemons reload it within 0.5 s)."""
        self.policies.mkdir(exist_ok=True)
        template = rig.template(self.workdir / "template.xml", self.hosts[0].images / "golden.qcow2")
        text = POLICY.format(group=GROUP, template=template, size=size, step=step)
        temp = self.policies / ".web.yaml.tmp"
        temp.write_text(text)
        temp.rename(self.policies / "web.yaml")

    def settings(self, name: str, port: int) -> str:
        token = self.workdir / "operator-token"
        if not token.exists():
            token.write_text(f"{uuid.uuid4().hex}\n")
            token.chmod(0o600)
        uris = ", ".join(json.dumps(h.uri) for h in self.hosts)
        endpoints = ", ".join(json.dumps(e) for e in self.etcd.endpoints)
        return f"""\
policies: [{self.policies}]
state_dir: {self.workdir / ("state-" + name)}
http: {{listen: 127.0.0.1, port: {port}, token_file: {token}}}
target: {{uris: [{uris}], memory_reserve_mib: 0, reconcile_interval: 5s, shutdown_timeout: 0s,
  host_dead_after: {self.host_dead_after}s}}
engine: {{jitter: 0s, policy_poll: 0.5s, max_concurrent_actions: 1, shutdown_grace: 5s}}
log: {{format: json, level: info}}
coordination:
  endpoints: [{endpoints}]
  name: {name}
  prefix: {self.prefix}
  lease_ttl: {self.ttl}
  margin: 0.75s
  request_timeout: 0.5s
  campaign_interval: 0.2s
{self.coordination}"""

    def start(self, name: str) -> Daemon:
        port = rig.free_ports(1)[0]
        daemon = self.daemons.get(name) or Daemon(name, self.workdir, port)
        daemon.port = port
        config = self.workdir / f"{name}.yaml"
        config.write_text(self.settings(name, port))
        with daemon.log.open("ab") as log:
            daemon.process = subprocess.Popen(
                [sys.executable, "-m", "autoscaler", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self.daemons[name] = daemon
        return daemon

    def wait_started(self, daemon: Daemon, timeout: float = 30) -> None:
        rig.wait_for(lambda: daemon.get("/readyz")[0] == 200, timeout, f"daemon {daemon.name} ready")

    def leaders(self) -> list[str]:
        return [d.name for d in self.daemons.values() if d.alive and d.leading()]

    def wait_leader(self, timeout: float, among: list[str] | None = None) -> str:
        found: list[str] = []

        def one() -> bool:
            found[:] = [n for n in self.leaders() if among is None or n in among]
            return len(found) == 1

        rig.wait_for(one, timeout, "exactly one leader", step=0.02)
        return found[0]

    def members(self) -> list[str]:
        return sorted(name for host in self.hosts for name in host.domains(PREFIX))

    def overlays(self) -> list[str]:
        return sorted(name for host in self.hosts for name in host.overlays(PREFIX))

    def total_actions(self) -> dict[str, int]:
        return {name: d.actions() for name, d in self.daemons.items()}

    def stop_all(self) -> None:
        for daemon in self.daemons.values():
            daemon.stop()


@contextlib.contextmanager
def cluster(
    workdir: pathlib.Path, etcd: rig.EtcdCluster, hosts: list[rig.Host], prefix: str
) -> Iterator[Cluster]:
    found = Cluster(workdir, etcd, hosts, prefix)
    try:
        yield found
    finally:
        found.stop_all()


def orphans(c: Cluster) -> list[str]:
    """Overlays without a domain of the same name."""
    domains = set(c.members())
    return [o for o in c.overlays() if not any(o.startswith(f"{d}-") for d in domains)]


def settle(c: Cluster, size: int, timeout: float) -> None:
    """Wait until libvirt shows exactly `size` members and no orphan overlay (else say what is there)."""
    try:
        rig.wait_for(
            lambda: len(c.members()) == size and not orphans(c), timeout, f"{size} members", step=0.2
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; members: {c.members()}, orphan overlays: {orphans(c)}") from None


def monotonic() -> float:
    return time.monotonic()
