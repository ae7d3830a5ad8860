"""A real libvirtd + virtlogd for the integration tests, started the way libvirt.md §9 describes.

If a libvirtd already answers on qemu:///system it is reused (and never restarted or stopped).
Otherwise this module starts virtlogd and libvirtd as root, after giving /dev/kvm the mode QEMU
needs (restored afterwards). A storage pool in a temporary directory holds a small golden
qcow2 made by qemu-img. The domain type is 'kvm' when /dev/kvm exists, else 'qemu' (TCG);
AUTOSCALER_TEST_DOMAIN_TYPE overrides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from autoscaler.demo import config

URI = "qemu:///system"
KVM = pathlib.Path("/dev/kvm")


@dataclasses.dataclass
class LibvirtEnv:
    """What the tests get: the URI, a pool with a golden image, and a template file."""

    uri: str
    workdir: pathlib.Path
    pool: str
    golden: str
    template: str
    domain_type: str
    daemons: Daemons

    def stop_libvirtd(self) -> None:
        """Stop our libvirtd (QEMU processes survive); skips when it is not ours."""
        if self.daemons.libvirtd is None:
            pytest.skip("libvirtd was already running and is not ours to restart")
        self.daemons.libvirtd.send_signal(signal.SIGTERM)
        self.daemons.libvirtd.wait(timeout=30)

    def start_libvirtd(self) -> None:
        """Start our libvirtd again."""
        self.daemons.libvirtd = _start_libvirtd(self.workdir)


def _virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run virsh against the system URI."""
    return subprocess.run(
        ["virsh", "-c", URI, *args], capture_output=True, text=True, check=check, timeout=120
    )


def _answers() -> bool:
    """True when a libvirtd answers on the system URI."""
    return _virsh("version", check=False).returncode == 0


def _wait_until_answering(deadline: float = 30.0) -> None:
    """Wait for libvirtd's socket, failing clearly after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not _answers():
        if time.monotonic() > end:
            raise RuntimeError("libvirtd did not answer on qemu:///system")
        time.sleep(0.1)


def _start_libvirtd(workdir: pathlib.Path) -> subprocess.Popen[bytes]:
    """Start libvirtd in the foreground (as a child), logging to the work directory."""
    env = dict(os.environ, LIBVIRT_LOG_OUTPUTS=f"3:file:{workdir}/libvirtd.log")
    with (workdir / "libvirtd.out").open("ab") as out:
        process = subprocess.Popen(["libvirtd"], stdout=out, stderr=out, env=env)
    _wait_until_answering()
    return process


@contextlib.contextmanager
def _kvm_permissions() -> Iterator[None]:
    """Give /dev/kvm group kvm and mode 0660 (QEMU runs as libvirt-qemu), then restore it."""
    if not KVM.exists():
        yield
        return
    stat = KVM.stat()
    shutil.chown(KVM, group="kvm")
    KVM.chmod(0o660)
    try:
        yield
    finally:
        os.chown(KVM, stat.st_uid, stat.st_gid)
        KVM.chmod(stat.st_mode & 0o7777)


@dataclasses.dataclass
class Daemons:
    """The daemons this session started (none when a running libvirtd is reused)."""

    virtlogd: subprocess.Popen[bytes] | None = None
    libvirtd: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """SIGTERM and wait, libvirtd first."""
        for process in (self.libvirtd, self.virtlogd):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


@contextlib.contextmanager
def _daemons(workdir: pathlib.Path) -> Iterator[Daemons]:
    """Reuse a running libvirtd, or start virtlogd + libvirtd and stop them afterwards."""
    if _answers():
        yield Daemons()
        return
    if os.geteuid() != 0 or shutil.which("libvirtd") is None:
        pytest.skip("needs root and the libvirt-daemon-system package to start libvirtd")
    with (workdir / "virtlogd.out").open("ab") as log:
        daemons = Daemons(virtlogd=subprocess.Popen(["virtlogd"], stdout=log, stderr=log))
    try:
        daemons.libvirtd = _start_libvirtd(workdir)
        yield daemons
    finally:
        daemons.stop()


def domain_type() -> str:
    """kvm when /dev/kvm exists, else qemu (TCG); AUTOSCALER_TEST_DOMAIN_TYPE overrides."""
    return os.environ.get("AUTOSCALER_TEST_DOMAIN_TYPE") or ("kvm" if KVM.exists() else "qemu")


def template_xml(kind: str, golden: str, memory_mib: int = 64) -> str:
    """The demo's minimal template, under a test name: SeaBIOS idles on the empty golden disk."""
    return config.template_xml("as-test-template", golden, kind, memory_mib)


def _make_pool(workdir: pathlib.Path, pool: str) -> str:
    """A dir pool in the work directory with a 64 MiB golden qcow2; returns the golden's path."""
    images = workdir / "images"
    images.mkdir()
    golden = images / "golden.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(golden), "64M"], check=True)
    golden.chmod(0o644)
    _virsh("pool-define-as", pool, "dir", "--target", str(images))
    _virsh("pool-start", pool)
    _virsh("pool-refresh", pool)
    return str(golden)


def _remove_pool(pool: str) -> None:
    """Delete leftover volumes' pool definition (the directory goes with the work dir)."""
    _virsh("pool-destroy", pool, check=False)
    _virsh("pool-undefine", pool, check=False)


def _remove_leftover_domains(prefix: str) -> None:
    """Destroy and undefine domains the tests created under a name prefix (best effort)."""
    listing = _virsh("list", "--all", "--name", check=False).stdout.split()
    for name in (n for n in listing if n.startswith(prefix)):
        _virsh("destroy", name, check=False)
        _virsh("undefine", name, "--nvram", check=False)


@pytest.fixture(scope="session", name="libvirt_host")
def libvirt_env() -> Iterator[LibvirtEnv]:
    """The session's real libvirt host."""
    if shutil.which("virsh") is None or shutil.which("qemu-img") is None:
        pytest.skip("needs libvirt-clients and qemu-utils")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-libvirt-"))
    workdir.chmod(0o755)
    pool = workdir.name  # unique even when several test modules set up their own session
    with _kvm_permissions(), _daemons(workdir) as daemons:
        golden = _make_pool(workdir, pool)
        kind = domain_type()
        template = workdir / "template.xml"
        template.write_text(template_xml(kind, golden))
        try:
            yield LibvirtEnv(URI, workdir, pool, golden, str(template), kind, daemons)
        finally:
            _remove_leftover_domains("as-itlv")
            _remove_pool(pool)
    shutil.rmtree(workdir, ignore_errors=True)
