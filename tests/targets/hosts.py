"""Private test:/// hosts for the KVM target tests: a copy of the fixture per test, with its own memory."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import libvirt
import pytest

from autoscaler.policy import spec
from autoscaler.targets import kvm, lifecycle
from autoscaler.targets import reconcile as reconciling
from autoscaler.targets.inventory import Record
from autoscaler.virt import ops, xml

FIXTURE = pathlib.Path(__file__).parent.parent / "fixtures" / "libvirt" / "host.xml"
MiB = 1024 * 1024


def host_uri(
    directory: pathlib.Path, name: str = "host", memory_mib: int = 4096, domains: Sequence[str] = ()
) -> str:
    """A test:/// URI over a private copy of the fixture, with `memory_mib` of host memory.

    `domains` (domain XML) are added to the host: they are there again after every reconnect,
    as a real libvirtd keeps its domains across a restart (the test driver reloads the file).
    """
    text = FIXTURE.read_text().replace("<memory>4194304</memory>", f"<memory>{memory_mib * 1024}</memory>")
    text = text.replace("</node>", "".join(domains) + "</node>")
    path = directory / f"{name}.xml"
    path.write_text(text)
    return f"test://{path}"


def web_policy(**changes: object) -> spec.GroupPolicy:
    """The 'web' group of the fixture: 512 MiB clones of golden-web.qcow2."""
    fields: dict[str, object] = {
        "group": "web",
        "golden": "golden-web.qcow2",
        "template": "web-template",
        "pool": "default",
        "min": 0,
        "max": 20,
        "warmup": 0.0,
        "readiness": spec.Readiness(interval=0.05, timeout=30.0),
    }
    fields.update(changes)
    return spec.GroupPolicy.model_validate(fields)


def fast_settings(**changes: object) -> kvm.KvmSettings:
    """Short intervals so background work happens within a test's deadline."""
    base = kvm.KvmSettings(
        memory_reserve=256 * MiB,
        watch_interval=0.02,
        stats_interval=0.05,
        min_cpu_window=0.0,
        memory_interval=0.05,
        stop=lifecycle.StopTimings(shutdown_timeout=2.0, resend_interval=0.5, poll_interval=0.02),
        grace=reconciling.Grace(creating_stopped=0.0, creating_running=0.0, overlay=0.0),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@dataclasses.dataclass
class RecordingObserver:
    """Records what the target reports (a fake at our own TargetObserver seam)."""

    calls: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    phases: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)
    reconnects: list[str] = dataclasses.field(default_factory=list)
    refused: list[str] = dataclasses.field(default_factory=list)
    clones: list[str] = dataclasses.field(default_factory=list)
    """The group of each member cloned, in order."""
    removals: list[str] = dataclasses.field(default_factory=list)
    """The group of each domain destroyed, in order."""
    balancer_errors: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    hooks: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    drains: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    lookalikes: dict[str, int] = dataclasses.field(default_factory=dict)
    """Look-alike volumes left alone by the last reconcile of each host."""

    def libvirt_call(self, op: str, seconds: float, error_class: str | None) -> None:
        self.calls.append((op, error_class))

    def provisioned(self, group: str, phase: str, seconds: float) -> None:
        self.phases.append((group, phase, seconds))

    def cloned(self, group: str, seconds: float) -> None:
        self.clones.append(group)

    def destroyed(self, group: str, seconds: float) -> None:
        self.removals.append(group)

    def reconnected(self, uri: str) -> None:
        self.reconnects.append(uri)

    def capacity_refused(self, group: str) -> None:
        self.refused.append(group)

    def balancer_failed(self, group: str, op: str, error_class: str) -> None:
        self.balancer_errors.append((op, error_class))

    def hook_ran(self, group: str, event: str, result: str, how: str) -> None:
        self.hooks.append((event, result, how))

    def drain_ended(self, group: str, outcome: str, seconds: float) -> None:
        self.drains.append((outcome, seconds))

    def lookalike_volumes(self, host: str, count: int) -> None:
        self.lookalikes[host] = count


async def new_member(target: kvm.KvmTarget, policy: spec.GroupPolicy | None = None) -> Record:
    """Scale out one member of the web group and return its cached record."""
    name = (await target.scale_out(policy or web_policy(), 1)).done[0]
    record = target._cache.find("web", name)
    assert record is not None
    return record


async def eventually(predicate: Callable[[], object], deadline: float = 5.0) -> None:
    """Wait until `predicate()` is true, failing after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {deadline}s")
        await asyncio.sleep(0.01)


def libvirt_error(code: int, domain: int, message: str) -> libvirt.libvirtError:
    """A libvirtError as libvirtd would raise it, for faults the test driver cannot produce."""
    error = libvirt.libvirtError(message)
    error.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return error


SMALL_TEMPLATE = (
    "<domain type='kvm'><name>t</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>"
    "<os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>"
    "<source file='/var/lib/autoscaler-test/golden-web.qcow2'/><target dev='vda' bus='virtio'/>"
    "</disk></devices></domain>"
)


def our_domain(uuid: str, owner: xml.Ownership) -> str:
    """The domain XML of one of our clones, for `host_uri(domains=...)`."""
    overlay = f"/var/lib/autoscaler-test/{xml.overlay_name(owner.group, uuid)}"
    clone = xml.CloneSpec(
        xml.clone_name(owner.group, uuid),
        uuid,
        overlay,
        "/var/lib/autoscaler-test/golden-web.qcow2",
        "qcow2",
        owner,
    )
    return xml.clone_domain_xml(SMALL_TEMPLATE, clone)


def shutdown_like_qemu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a shutdown request answer as QEMU does (the test driver shuts a paused guest down):
    a paused guest is 'not running' (code 55) and nothing happens."""
    shutdown = ops.shutdown

    def like_qemu(conn: Any, uuid: str) -> None:
        if conn.lookupByUUIDString(uuid).state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            message = "Requested operation is not valid: domain is not running"
            raise libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_FROM_QEMU, message)
        shutdown(conn, uuid)

    monkeypatch.setattr(ops, "shutdown", like_qemu)
