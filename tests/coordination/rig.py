"""Real parts for the coordination tests: a 3-member etcd cluster on loopback and private libvirtds.

Every part is private to the test run: etcd members listen on free loopback ports chosen at run
time with their own data directories; each libvirtd runs unprivileged (as `nobody`, session mode, a direct
child stopped by its PID) with its own XDG runtime, config and cache directories (short paths:
QEMU's monitor socket path must stay under 108 bytes), so its socket, pid file and state live in
a temporary directory and never meet the machine's own libvirtd. QEMU logs go to files (no
virtlogd). Everything is stopped by the PID it was started with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from autoscaler.demo import config

USER = "nobody"


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(condition: Callable[[], object], timeout: float, what: str, step: float = 0.05) -> None:
    """Poll `condition` until it is truthy; fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


@dataclasses.dataclass
class Member:
    """One etcd member."""

    name: str
    client_port: int
    peer_port: int
    data_dir: pathlib.Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclasses.dataclass
class EtcdCluster:
    """Three etcd members; `kill`/`start` one, `endpoints` for the daemons."""

    members: list[Member]
    workdir: pathlib.Path

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    def _cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start(self, index: int) -> None:
        member = self.members[index]
        args = [
            "etcd",
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.url,
            "--advertise-client-urls", member.url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", self._cluster(),
            "--initial-cluster-token", f"as-test-{self.workdir.name}",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
        ]  # fmt: skip
        log = (self.workdir / f"{member.name}.log").open("ab")
        member.process = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()

    def kill(self, index: int) -> None:
        """SIGKILL one member (by its PID) and wait for it."""
        process = self.members[index].process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def healthy(self, index: int) -> bool:
        try:
            with urllib.request.urlopen(f"{self.members[index].url}/health", timeout=1) as answer:
                return b'"true"' in answer.read()
        except (urllib.error.URLError, OSError):
            return False

    def is_leader(self, index: int) -> bool:
        """Whether this member is the raft leader (etcd's /v3/maintenance/status)."""
        request = urllib.request.Request(
            f"{self.members[index].url}/v3/maintenance/status", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as answer:
                status = json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return str(status.get("leader")) == str(status.get("header", {}).get("member_id"))

    def wait_healthy(self, indexes: list[int] | None = None, timeout: float = 30.0) -> None:
        for index in indexes if indexes is not None else range(len(self.members)):
            wait_for(functools.partial(self.healthy, index), timeout, f"etcd member {index} healthy")

    def stop(self) -> None:
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                member.process.terminate()
                try:
                    member.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    member.process.kill()
                    member.process.wait()


@contextlib.contextmanager
def etcd_cluster(workdir: pathlib.Path, size: int = 3) -> Iterator[EtcdCluster]:
    """A fresh `size`-member cluster on free loopback ports; stopped afterwards."""
    if shutil.which("etcd") is None:
        pytest.skip("needs etcd (Debian package etcd-server)")
    ports = free_ports(2 * size)
    members = [Member(f"m{i}", ports[2 * i], ports[2 * i + 1], workdir / f"m{i}.etcd") for i in range(size)]
    cluster = EtcdCluster(members, workdir)
    try:
        for index in range(size):
            cluster.start(index)
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.stop()


@dataclasses.dataclass
class Host:
    """One private libvirtd standing for one hypervisor host."""

    name: str
    root: pathlib.Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> pathlib.Path:
        return self.root / "run" / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.socket}"

    @property
    def images(self) -> pathlib.Path:
        return self.root / "images"

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["virsh", "-c", self.uri, *args], capture_output=True, text=True, check=check, timeout=60
        )

    def domains(self, prefix: str = "as-") -> list[str]:
        """Names of every domain (running or not) whose name starts with `prefix`."""
        out = self.virsh("list", "--all", "--name").stdout
        return [line.strip() for line in out.splitlines() if line.strip().startswith(prefix)]

    def overlays(self, prefix: str = "as-") -> list[str]:
        return sorted(p.name for p in self.images.iterdir() if p.name.startswith(prefix))

    def restart(self) -> None:
        """Start libvirtd again after `stop` (its QEMUs kept running, as on a real host)."""
        self.socket.unlink(missing_ok=True)
        self.process = _launch(self.root)
        wait_for(self.socket.exists, 30, f"libvirtd socket of {self.name}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _owned_dirs(root: pathlib.Path, names: list[str], user: pwd.struct_passwd) -> None:
    for name in names:
        path = root / name
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, user.pw_uid, user.pw_gid)


def _start_host(root: pathlib.Path, name: str) -> Host:
    """Start an unprivileged libvirtd with everything under `root`, a pool and a golden image."""
    user = pwd.getpwnam(USER)
    root.mkdir(parents=True)
    root.chmod(0o755)
    _owned_dirs(root, ["run", "c/libvirt", "cache", "home", "images", "logs"], user)
    (root / "c" / "libvirt" / "qemu.conf").write_text('stdio_handler = "file"\n')
    host = Host(name, root, _launch(root))
    wait_for(host.socket.exists, 30, f"libvirtd socket of {name}")
    golden = host.images / "golden.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(golden), "64M"], check=True)
    os.chown(golden, user.pw_uid, user.pw_gid)
    golden.chmod(0o644)
    host.virsh("pool-define-as", "as-pool", "dir", "--target", str(host.images))
    host.virsh("pool-start", "as-pool")
    return host


def _launch(root: pathlib.Path) -> subprocess.Popen[bytes]:
    """libvirtd as `nobody` with its XDG directories under `root` (a direct child)."""
    user = pwd.getpwnam(USER)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(root / "home"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "XDG_CONFIG_HOME": str(root / "c"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "LIBVIRT_LOG_OUTPUTS": f"3:file:{root}/logs/libvirtd.log",
    }
    out = (root / "libvirtd.out").open("ab")
    process = subprocess.Popen(
        ["libvirtd"],
        stdout=out,
        stderr=out,
        cwd=root,
        env=env,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
    )
    out.close()
    return process


@contextlib.contextmanager
def hosts(workdir: pathlib.Path, count: int = 2) -> Iterator[list[Host]]:
    """`count` private libvirtds (each with pool `as-pool` holding `golden.qcow2`); stopped after."""
    if os.geteuid() != 0 or shutil.which("libvirtd") is None:
        pytest.skip("needs root and libvirtd to start private libvirtds")
    started: list[Host] = []
    try:
        for index in range(count):
            started.append(_start_host(workdir / f"h{index}", f"host{index}"))
        yield started
    finally:
        for host in started:
            _destroy_all(host)
            host.stop()


def _destroy_all(host: Host) -> None:
    """Leave no QEMU behind: destroy every domain of the private libvirtd before it stops."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        for name in host.domains(prefix=""):
            host.virsh("destroy", name, check=False)


def template(path: pathlib.Path, golden: pathlib.Path, memory_mib: int = 32) -> pathlib.Path:
    """A TCG template file (unprivileged QEMU cannot use /dev/kvm) for the clones."""
    path.write_text(config.template_xml("as-test-template", str(golden), "qemu", memory_mib))
    return path
