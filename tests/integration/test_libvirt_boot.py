"""A real guest booted under TCG from a linked clone, counted ready only when it says so."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from autoscaler import model
from autoscaler.demo import netns
from autoscaler.policy import spec
from autoscaler.targets import kvm, lifecycle
from autoscaler.virt import ops, xml
from tests.integration import libvirt_env
from tests.targets.hosts import RecordingObserver, eventually

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.slow]
ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = ROOT / ".cache" / "test-image"


@pytest.fixture
def guest_images(libvirt_host: libvirt_env.LibvirtEnv) -> pathlib.Path:
    subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True, timeout=600)
    images = pathlib.Path(libvirt_host.golden).parent
    for name in ("vmlinuz", "initrd.img"):
        shutil.copy(IMAGE / name, images / name)
    shutil.copy(IMAGE / "data.qcow2", images / "boot-golden.qcow2")
    return images


async def test_real_guest_becomes_ready_through_its_channel(
    libvirt_host: libvirt_env.LibvirtEnv, guest_images: pathlib.Path
) -> None:
    template = guest_images / "boot-template.xml"
    golden = guest_images / "boot-golden.qcow2"
    template.write_text(netns.guest_template_xml("as-boot-template", guest_images, golden, network=None))
    policy = spec.GroupPolicy.model_validate(
        {
            "group": "itlvboot",
            "golden": str(guest_images / "boot-golden.qcow2"),
            "template": str(template),
            "pool": libvirt_host.pool,
            "min": 0,
            "max": 2,
            "warmup": 0.0,
            "readiness": {
                "probe": "channel",
                "channel": "org.example.ready",
                "interval": 0.1,
                "timeout": 120.0,
            },
        }
    )
    observer = RecordingObserver()
    settings = kvm.KvmSettings(
        memory_reserve=128 * 1024 * 1024,
        watch_interval=0.05,
        stop=lifecycle.StopTimings(shutdown_timeout=10.0, resend_interval=1.0),
    )
    target = kvm.KvmTarget(libvirt_host.uri, settings=settings, policies=[policy], observer=observer)
    await target.start()
    try:
        [name] = (await target.scale_out(policy, 1)).done
        assert (await target.inventory("itlvboot")).instances[0].state is model.InstanceState.BOOTING
        await eventually(lambda: target.provision_seconds("itlvboot") is not None, 120.0)
        member = (await target.inventory("itlvboot")).instances[0]
        assert member.state is model.InstanceState.READY
        seconds = target.provision_seconds("itlvboot")
        assert seconds is not None
        assert seconds > 0.5  # a real boot, not the start call
        assert ("itlvboot", "ready", seconds) in observer.phases
        live = await target.gateway(libvirt_host.uri).run(ops.live_xml, member.uuid, op="probe")
        assert xml.channel_connected(live, "org.example.ready")
        print(f"clone-to-ready under TCG: {seconds:.2f}s for {name}")
        assert (await target.scale_in(policy, [name])).failed == 0
    finally:
        await target.close()
