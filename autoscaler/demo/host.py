"""A libvirt host for the demo, prepared from nothing and put back as it was afterwards.

On a machine where the system libvirt works (its socket answers, or, as root, libvirtd and virtlogd
can be started the way the integration fixture does) the demo clones real QEMU domains from a tiny
empty golden qcow2 in a transient pool; SeaBIOS finds nothing to boot and QEMU keeps running, which
is enough for the whole clone/start/destroy lifecycle. Anywhere else it falls back to libvirt's
test driver over a private host file, where the same code runs against an in-memory hypervisor.
Everything is driven through `virsh` and `qemu-img`: libvirt's Python binding stays in `virt/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import shutil
import stat
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoscaler.demo import config

SYSTEM_URI = "qemu:///system"
SOCKET = Path("/run/libvirt/libvirt-sock")
POOL = "autoscaler-demo"
GOLDEN = "golden-demo.qcow2"
TEMPLATE = "demo-template"


@dataclass
class DemoHost:
    """Where the demo group lives and how to undo what was set up for it."""

    uri: str
    kind: str
    """Shown to the user: 'QEMU/KVM', 'QEMU (TCG)' or 'libvirt test driver'."""
    pool: str
    golden: str
    template: str
    """Path of the template domain XML file."""
    memory_reserve_mib: int
    policy_text: str | None = None
    """The group's policy when the world brings its own (served); None: `config.policy_yaml`."""
    undo: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def release(self) -> None:
        """Undo the preparation, newest step first; every step runs even if one fails."""
        while self.undo:
            step = self.undo.pop()
            with contextlib.suppress(Exception):
                await step()


async def _run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {err.decode().strip() or out.decode().strip()}")
    return out.decode()


async def prepare(workdir: Path, uri: str | None) -> DemoHost:
    """The real system libvirt when usable (or asked for), else a private test-driver host."""
    if uri is not None and uri.startswith("test"):
        return test_host(workdir)
    try:
        return await system_host(workdir, uri or SYSTEM_URI)
    except (RuntimeError, OSError) as exc:
        if uri is not None:
            raise
        host = test_host(workdir)
        host.kind += f" (system libvirt unavailable: {str(exc)[:120]})"
        return host


# --- the test driver --------------------------------------------------------------------------------


def test_host(workdir: Path) -> DemoHost:
    """A test:/// host over a private file: 8 GiB, one pool with the golden image, nothing running."""
    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    golden_path = images / GOLDEN
    (workdir / "host.xml").write_text(_test_node(images, golden_path), encoding="utf-8")
    template = workdir / "demo-template.xml"
    template.write_text(config.template_xml(TEMPLATE, str(golden_path), "kvm"), encoding="utf-8")
    return DemoHost(f"test://{workdir / 'host.xml'}", "libvirt test driver", POOL, GOLDEN, str(template), 512)


def _test_node(images: Path, golden: Path) -> str:
    return f"""<node>
  <cpu><mhz>2000</mhz><model>demo</model><nodes>1</nodes><sockets>1</sockets>
    <cores>4</cores><threads>1</threads><active>4</active></cpu>
  <memory>{8 * 1024 * 1024}</memory>
  <pool type='dir'>
    <name>{POOL}</name>
    <uuid>5d3c39a0-7e2b-4b7e-9d60-3f2f7c1d0a11</uuid>
    <capacity unit='GiB'>100</capacity><allocation>0</allocation><available unit='GiB'>100</available>
    <source/><target><path>{images}</path></target>
    <volume type='file'><name>{GOLDEN}</name><capacity unit='MiB'>64</capacity>
      <target><path>{golden}</path><format type='qcow2'/></target></volume>
  </pool>
</node>
"""


# --- the system libvirt -----------------------------------------------------------------------------


async def system_host(workdir: Path, uri: str) -> DemoHost:
    """The system libvirt with a transient pool holding a 64 MiB empty golden image."""
    if shutil.which("virsh") is None or shutil.which("qemu-img") is None:
        raise RuntimeError("virsh or qemu-img is not installed")
    host = DemoHost(uri, "", POOL, "", "", 256)
    try:
        if uri != SYSTEM_URI:  # nothing local to start: a URI that does not answer fails first
            await _run("virsh", "-c", uri, "version")
        # libvirtd caches whether KVM is usable: fix /dev/kvm before it starts, or every define
        # re-probes QEMU for half a minute.
        domain_type = _kvm_usable(host)
        await _ensure_daemons(workdir, host)
        await _run("virsh", "-c", uri, "version")
        host.kind = "QEMU/KVM" if domain_type == "kvm" else "QEMU (TCG)"
        await _pool(workdir, host)
    except BaseException:
        await host.release()
        raise
    template = workdir / "demo-template.xml"
    template.write_text(config.template_xml(TEMPLATE, host.golden, domain_type), encoding="utf-8")
    host.template = str(template)
    return host


async def _ensure_daemons(workdir: Path, host: DemoHost) -> None:
    """Start virtlogd and libvirtd (as the test fixture does) when none runs and we are root."""
    if host.uri != SYSTEM_URI or await asyncio.to_thread(SOCKET.exists):
        return
    if os.geteuid() != 0 or shutil.which("libvirtd") is None:
        raise RuntimeError("no libvirtd is running and the demo is not root to start one")
    for name in ("virtlogd", "libvirtd"):
        env = {**os.environ, "LIBVIRT_LOG_OUTPUTS": f"3:file:{workdir / name}.log"}
        process = await asyncio.create_subprocess_exec(
            name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        host.undo.append(_stopper(process))
    await _wait_for(SOCKET.exists, 20.0, "libvirtd did not open its socket")


def _stopper(process: asyncio.subprocess.Process) -> Callable[[], Awaitable[None]]:
    async def stop() -> None:
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    return stop


async def _wait_for(predicate: Callable[[], bool], deadline: float, message: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not predicate():
        if loop.time() > end:
            raise RuntimeError(message)
        await asyncio.sleep(0.1)


def _kvm_usable(host: DemoHost) -> str:
    """'kvm' when /dev/kvm can be opened by QEMU's group (fixing the mode as Debian's udev does)."""
    device = Path("/dev/kvm")
    if not device.exists():
        return "qemu"
    info = device.stat()
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        return "qemu"
    if info.st_gid == kvm_gid and info.st_mode & stat.S_IRGRP and info.st_mode & stat.S_IWGRP:
        return "kvm"
    if os.geteuid() != 0:
        return "qemu"
    os.chown(device, -1, kvm_gid)
    os.chmod(device, 0o660)
    host.undo.append(_restorer(device, info))
    return "kvm"


def _restorer(device: Path, info: os.stat_result) -> Callable[[], Awaitable[None]]:
    async def restore() -> None:
        os.chown(device, -1, info.st_gid)
        os.chmod(device, stat.S_IMODE(info.st_mode))

    return restore


async def _pool(workdir: Path, host: DemoHost) -> None:
    """A transient dir pool in `workdir` with the golden image, readable by QEMU."""
    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for directory in (workdir, images):
        directory.chmod(0o755)
    golden = images / GOLDEN
    await _run("qemu-img", "create", "-q", "-f", "qcow2", str(golden), "64M")
    golden.chmod(0o644)
    with contextlib.suppress(RuntimeError):
        await _run("virsh", "-c", host.uri, "pool-destroy", POOL)
    await _run("virsh", "-c", host.uri, "pool-create-as", POOL, "dir", "--target", str(images))
    host.undo.append(lambda: _quiet("virsh", "-c", host.uri, "pool-destroy", POOL))
    await _run("virsh", "-c", host.uri, "pool-refresh", POOL)
    host.golden = str(golden)


async def _quiet(*argv: str) -> None:
    with contextlib.suppress(RuntimeError):
        await _run(*argv)
