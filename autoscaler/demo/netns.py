"""A private network for real guests: its own network and mount namespace, libvirtd, DHCP and services.

Nothing here touches the machine's network or its libvirtd. `Rig.start(workdir)`:

1. starts a holder process (`unshare --net --mount --propagation private`) that bind-mounts
   private directories over /run/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt
   and /etc/libvirt (a copy of the host's *.conf files only, QEMU running as root), brings `lo` up
   and waits for its owner to go (autoscaler/demo/holder.py: a kill -9 of the owner makes it kill
   everything left inside); every other process joins it with `nsenter`;
2. starts virtlogd and libvirtd inside it, each with its own pid file (`-p`: the default pid files
   live outside the bind mounts and would collide with the host's daemons);
3. creates an isolated libvirt network (bridge `asbr0`, 10.77.0.1/24, dnsmasq DHCP on
   10.77.0.100-199) that exists only inside the namespace, and a dir storage pool in the work dir;
4. copies the test guest (`scripts/build-test-image.sh`, rebuilt when the script changes) into
   the pool: `vmlinuz`, `initrd.img` and the golden `golden.qcow2`.

The served demo (`autoscaler demo --mode served`) runs in one; the tests use it through the
`netns_rig` fixture (tests/integration/conftest.py, one rig per session):

    async def test_x(netns_rig: netns.Rig) -> None:
        template = netns_rig.write_template("web")        # direct kernel boot, NIC on the network
        prom = netns_rig.start_prometheus(scrape_configs)  # Prometheus inside the namespace
        proc = netns_rig.spawn("name", [argv...])          # any process inside the namespace
        status, body = await netns_rig.get("http://10.77.0.123/")   # HTTP from inside it

The test process itself stays in the host's namespaces: it reaches libvirtd through the socket
path (`Rig.uri`), and services inside the namespace through `Rig.get`/`Rig.call`, which run in a
worker thread that joined the namespace (setns on one thread only). Ports inside the namespace
come from `Rig.free_port()`. Stopping the rig destroys the domains it holds, the network (and its
dnsmasq), the daemons it spawned and the holder; the namespace then disappears.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from autoscaler.demo import holder

T = TypeVar("T")
ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = ROOT / ".cache" / "test-image"
BUILDER = ROOT / "scripts" / "build-test-image.sh"
CLONE_NEWNET = 0x40000000
PRIVATE_DIRS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
    "etc": "/etc/libvirt",
}
NETWORK = "asnet"
BRIDGE = "asbr0"
GATEWAY = "10.77.0.1"
SUBNET = "10.77.0.0/24"
NEEDED = ("unshare", "nsenter", "libvirtd", "virtlogd", "virsh", "dnsmasq", "qemu-img", "qemu-system-x86_64")


class RigUnavailable(Exception):
    """This machine cannot hold a rig (not root, a program or the image builder missing): say why."""


class RigError(Exception):
    """A part of a started rig failed (a daemon did not answer, Prometheus exited)."""


def missing_parts(euid: int | None = None, which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """What keeps this machine from holding a rig: empty when it can."""
    missing = [f"program {name}" for name in NEEDED if which(name) is None]
    if (os.geteuid() if euid is None else euid) != 0:
        missing.insert(0, "root")
    if not BUILDER.exists():
        missing.append(f"the test image builder {BUILDER.relative_to(ROOT)}")
    return missing


def _network_xml() -> str:
    """An isolated network (no <forward>): DHCP from dnsmasq, reachable only inside the namespace."""
    return f"""<network>
  <name>{NETWORK}</name>
  <bridge name='{BRIDGE}' stp='off' delay='0'/>
  <ip address='{GATEWAY}' netmask='255.255.255.0'>
    <dhcp><range start='10.77.0.100' end='10.77.0.199'/></dhcp>
  </ip>
</network>"""


def guest_template_xml(
    name: str,
    images: pathlib.Path,
    golden: pathlib.Path,
    memory_mib: int = 128,
    network: str | None = NETWORK,
) -> str:
    """The test guest as a template: TCG, direct kernel boot (test-image.md variant A), a NIC on `network`.

    Readiness shows on the virtio-serial channel org.example.ready and on a READY line in the
    serial log; the HTTP service listens on port 80 of the DHCP address. With `network` None the
    guest has no NIC (a boot on the system libvirt, which has no network of ours).
    """
    nic = ""
    if network is not None:
        source = f"<source network='{network}'/>"
        nic = f"    <interface type='network'>{source}<model type='virtio'/></interface>\n"
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{images}/vmlinuz</kernel>
    <initrd>{images}/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 no_timer_check</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{golden}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
{nic}    <serial type='file'><source path='{images}/{name}.serial.log'/><target port='0'/></serial>
    <channel type='unix'><source mode='bind'/><target type='virtio' name='org.example.ready'/></channel>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def _libc_setns(path: str) -> None:
    """Move the calling thread into the network namespace at `path`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path})")
    finally:
        os.close(fd)


@dataclasses.dataclass
class Process:
    """A process the rig started inside the namespace, with its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log: pathlib.Path

    def alive(self) -> bool:
        """True while it runs."""
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL at once (a crash)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        """The end of its log, for failure messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Rig:
    """One private namespace with libvirtd, an isolated DHCP network, a pool and the test guest."""

    def __init__(self, workdir: pathlib.Path, scratch: pathlib.Path | None = None) -> None:
        self.workdir = workdir
        self.scratch = scratch
        """Removed by the holder when the owner dies without stopping the rig (None: nothing)."""
        self.images = workdir / "images"
        self.pool = f"as-rig-{workdir.name[-8:]}"
        self.network = NETWORK
        self.gateway = GATEWAY
        self.subnet = SUBNET
        self.golden = self.images / "golden.qcow2"
        self.uri = f"qemu:///system?socket={workdir / 'run' / 'libvirt-sock'}"
        """For the test process, which stays outside the namespace."""
        self.inner_uri = "qemu:///system"
        """For processes inside the namespace (the daemon under test)."""
        self._holder: subprocess.Popen[bytes] | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self.processes: list[Process] = []

    # --- start and stop ------------------------------------------------------------------------

    @classmethod
    def start(cls, workdir: pathlib.Path, scratch: pathlib.Path | None = None) -> Rig:
        """A running rig in `workdir`: RigUnavailable when a part is missing, stopped again on error.

        Should this process die without `stop()` (kill -9), the holder kills everything in the
        namespaces and removes `scratch` (the owner's work directory, which holds `workdir`).
        """
        missing = missing_parts()
        if missing:
            raise RigUnavailable(f"the namespace rig needs {', '.join(missing)}")
        built = subprocess.run([str(BUILDER)], check=False, capture_output=True, text=True, timeout=600)
        if built.returncode != 0:
            raise RigUnavailable(f"building the test image failed: {built.stderr.strip()[-300:]}")
        rig = cls(workdir, scratch)
        try:
            rig._start_all()
        except BaseException:
            rig.stop()
            raise
        return rig

    def _start_all(self) -> None:
        self._prepare_dirs()
        self._start_holder()
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="netns", initializer=_libc_setns, initargs=(self.netns_path,)
        )
        self.spawn("virtlogd", ["virtlogd", "-p", str(self.workdir / "virtlogd.pid")])
        env = {"LIBVIRT_LOG_OUTPUTS": f"3:file:{self.workdir / 'libvirtd.log'}"}
        self.spawn("libvirtd", ["libvirtd", "-p", str(self.workdir / "libvirtd.pid")], env=env)
        self._wait_for_libvirtd()
        (self.workdir / "network.xml").write_text(_network_xml())
        self.virsh("net-create", str(self.workdir / "network.xml"))
        self.virsh("pool-create-as", self.pool, "dir", "--target", str(self.images))

    def _prepare_dirs(self) -> None:
        self.workdir.chmod(0o755)
        for name in PRIVATE_DIRS:
            (self.workdir / name).mkdir(exist_ok=True)
        for conf in pathlib.Path("/etc/libvirt").glob("*.conf"):
            shutil.copy(conf, self.workdir / "etc" / conf.name)
        with (self.workdir / "etc" / "qemu.conf").open("a") as qemu_conf:
            qemu_conf.write('\nuser = "root"\ngroup = "root"\n')
        self.images.mkdir(exist_ok=True)
        for name in ("vmlinuz", "initrd.img"):
            shutil.copy(IMAGE / name, self.images / name)
        shutil.copy(IMAGE / "data.qcow2", self.golden)
        self.golden.chmod(0o444)

    def _start_holder(self) -> None:
        binds = [f"--bind={self.workdir / name}:{target}" for name, target in PRIVATE_DIRS.items()]
        scratch = [f"--scratch={self.scratch}"] if self.scratch is not None else []
        command = [sys.executable, "-m", "autoscaler.demo.holder", *binds, *scratch]
        with (self.workdir / "holder.log").open("ab") as log:
            self._holder = subprocess.Popen(
                ["unshare", "--net", "--mount", "--propagation", "private", *command],
                stdin=subprocess.PIPE,  # its end of file, when this process exits, empties the namespaces
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self._holder.stdout is not None
        with self._holder.stdout as output:
            first = output.readline().decode().strip()
            if first != "up":
                rest = output.read().decode(errors="replace")
                raise RuntimeError(f"namespace holder failed: {first} {rest}")

    def join(self) -> None:
        """Move the calling process into the namespace's network; only while it has one thread.

        Every thread and socket it makes afterwards lives in the namespace (setns moves only the
        calling thread, new threads inherit it), which is how the served demo runs the daemon, the
        load generator and the live view inside, never on the host's network.
        """
        if threading.active_count() != 1:
            raise RigError("joining the namespace needs a single-threaded process")
        _libc_setns(self.netns_path)

    def _wait_for_libvirtd(self, deadline: float = 30.0) -> None:
        end = time.monotonic() + deadline
        while self.virsh("version", check=False).returncode != 0:
            libvirtd = next(p for p in self.processes if p.name == "libvirtd")
            if not libvirtd.alive() or time.monotonic() > end:
                raise RuntimeError(f"private libvirtd did not answer:\n{libvirtd.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Destroy every domain and the network, stop what was spawned, then the holder."""
        if self._holder is not None and self._holder.poll() is None:
            self._destroy_domains()
            self.virsh("net-destroy", self.network, check=False)
            self.virsh("pool-destroy", self.pool, check=False)
        for process in reversed(self.processes):
            process.stop()
        self._kill_stragglers()
        if self._holder is not None and self._holder.poll() is None:
            self._holder.kill()
            self._holder.wait(timeout=10)
        if self._holder is not None and self._holder.stdin is not None:
            self._holder.stdin.close()  # only now: its end of file would make the holder sweep
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)

    def _destroy_domains(self) -> None:
        self.remove_domains("")

    def remove_domains(self, prefix: str, volume_prefix: str | None = None) -> None:
        """Destroy and undefine the domains named `prefix*`; delete the pool's `volume_prefix*` volumes.

        Tests share one rig per session: each removes what it created, so the next starts clean.
        """
        for name in self.virsh("list", "--all", "--name", check=False).stdout.split():
            if name.startswith(prefix):
                self.virsh("destroy", name, check=False)
                self.virsh("undefine", name, "--nvram", check=False)
        if volume_prefix is None:
            return
        listing = self.virsh("vol-list", self.pool, check=False).stdout.splitlines()[2:]
        for name in (line.split()[0] for line in listing if line.strip()):
            if name.startswith(volume_prefix):
                self.virsh("vol-delete", name, "--pool", self.pool, check=False)

    def _kill_stragglers(self) -> None:
        """SIGKILL what still runs inside this namespace (a QEMU or dnsmasq a crash left behind).

        Only processes in this rig's own namespaces are touched; they exist because this rig
        created the namespaces (the holder and the calling process, which may have joined, are spared).
        """
        if self._holder is None or self._holder.poll() is not None:
            return
        ours = holder.namespace_ids(self._holder.pid)
        holder.kill_members(ours, [self._holder.pid, os.getpid()], deadline=10.0)

    # --- inside the namespace ------------------------------------------------------------------

    @property
    def netns_path(self) -> str:
        """The namespace's handle, /proc/<holder>/ns/net."""
        assert self._holder is not None
        return f"/proc/{self._holder.pid}/ns/net"

    def enter(self) -> list[str]:
        """The command prefix that runs a program inside the namespace (network and mounts)."""
        assert self._holder is not None
        return ["nsenter", "--target", str(self._holder.pid), "--net", "--mount", "--"]

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Process:
        """Start `argv` inside the namespace, logging to <workdir>/<name>.log; stopped by `stop()`."""
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [*self.enter(), *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # a terminal's Ctrl-C goes to the owner, which stops it in order
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """virsh against the private libvirtd."""
        return subprocess.run(
            ["virsh", "-c", self.uri, *args], capture_output=True, text=True, check=check, timeout=120
        )

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking function in a thread that joined the namespace's network."""
        assert self._threads is not None
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """`call` for synchronous code."""
        assert self._threads is not None
        return self._threads.submit(fn, *args).result()

    def free_port(self) -> int:
        """A TCP port free on 127.0.0.1 inside the namespace."""
        return self.call_sync(loopback_port)

    async def get(self, url: str, seconds: float = 5.0) -> tuple[int, str]:
        """(status, body) of an HTTP GET from inside the namespace; status 0 when it cannot connect."""
        return await self.call(http_get, url, seconds)

    def write_template(self, name: str, memory_mib: int = 128) -> pathlib.Path:
        """A template file for the test guest on this rig's network (golden: `self.golden`)."""
        path = self.workdir / f"{name}.xml"
        path.write_text(guest_template_xml(name, self.images, self.golden, memory_mib))
        return path

    def start_prometheus(self, scrape_configs: str, name: str = "prometheus") -> Prometheus:
        """A Prometheus server inside the namespace with these scrape configs (YAML, indented 2)."""
        port = self.free_port()
        directory = self.workdir / name
        directory.mkdir()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n{scrape_configs}"
        )
        argv = [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        prometheus = Prometheus(self, self.spawn(name, argv), f"http://127.0.0.1:{port}")
        prometheus.wait_ready()
        return prometheus


@dataclasses.dataclass
class Prometheus:
    """A Prometheus server running inside the rig's namespace."""

    rig: Rig
    process: Process
    url: str

    def wait_ready(self, deadline: float = 60.0) -> None:
        """Block until /-/ready answers 200."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if not self.process.alive():
                raise RigError(f"prometheus exited:\n{self.process.tail()}")
            if self.rig.call_sync(http_get, f"{self.url}/-/ready", 1.0)[0] == 200:
                return
            time.sleep(0.1)
        raise RigError(f"prometheus not ready after {deadline}s:\n{self.process.tail()}")

    async def api(self, path: str) -> Any:
        """GET an API path (query string included) and return its `data`."""
        status, body = await self.rig.get(f"{self.url}{path}")
        answer = json.loads(body) if status == 200 else {}
        if answer.get("status") != "success":
            raise RigError(f"prometheus {path}: {status} {body[:300]}")
        return answer["data"]


def loopback_port() -> int:
    """A TCP port free on 127.0.0.1 in the calling thread's network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of one GET; (0, reason) when the server cannot be reached."""
    if not url.startswith("http://"):
        raise ValueError(f"only plain http URLs inside the namespace, got {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only, above)
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc)
