"""Placement across hosts: spread by default, memory and vCPU admission, hosts without the golden
image skipped with a reason, and an unreachable host's members unknown until it is declared dead."""

from __future__ import annotations

import pathlib
import time

from autoscaler.targets import kvm, placement
from tests.targets.hosts import eventually, fast_settings, host_uri, web_policy

GiB = 1024**3


def test_a_group_spreads_before_it_fills_the_roomiest_host() -> None:
    hosts = [
        placement.Host("a", 64 * GiB, members=2),
        placement.Host("b", 8 * GiB),
        placement.Host("c", 16 * GiB),
    ]
    assert placement.place(hosts, GiB, 0, 4) == ["c", "b", "c", "b"]


def test_vcpu_room_limits_a_host_with_memory_to_spare() -> None:
    room = placement.vcpu_room(cpus=8, used=12, reserve=2, ratio=2.0)
    assert room == 0
    hosts = [placement.Host("busy", 64 * GiB, 0, room), placement.Host("idle", 4 * GiB, 1, 8)]
    assert placement.place(hosts, GiB, 0, 5, vcpus=2) == ["idle"] * 4
    assert placement.capacity(hosts, GiB, 0, vcpus=2) == 4


def test_unknown_vcpu_room_leaves_memory_to_decide() -> None:
    assert placement.fits_host(placement.Host("h", 4 * GiB), GiB, GiB, vcpus=4) == 3


def _host_without_golden(directory: pathlib.Path) -> pathlib.Path:
    """A test host whose pool holds another image than the group's golden one."""
    path = directory / "without.xml"
    source = pathlib.Path(host_uri(directory, "tmp").removeprefix("test://"))
    path.write_text(source.read_text().replace("golden-web.qcow2", "golden-other.qcow2"))
    return path


async def test_a_host_without_the_golden_image_is_skipped_and_said(tmp_path: pathlib.Path) -> None:
    with_image = host_uri(tmp_path, "with")
    without = _host_without_golden(tmp_path)
    target = kvm.KvmTarget([with_image, f"test://{without}"], settings=fast_settings())
    target.set_policies([web_policy()])
    await target.start()
    try:
        result = await target.scale_out(web_policy(), 2)
        assert len(result.done) == 2
        hosts = {i.host for i in (await target.inventory("web")).instances}
        assert hosts == {with_image}
        skipped = target.hosts_status()["skipped_by_placement"]
        assert "golden-web.qcow2" in skipped["web"][f"test://{without}"]  # type: ignore[index]
    finally:
        await target.close()


async def test_an_unreachable_hosts_members_are_unknown_until_it_is_declared_dead(
    tmp_path: pathlib.Path,
) -> None:
    first, second = host_uri(tmp_path, "one"), host_uri(tmp_path, "two")
    target = kvm.KvmTarget([first, second], settings=fast_settings(host_dead_after=0.5))
    target.set_policies([web_policy()])
    await target.start()
    try:
        await target.scale_out(web_policy(), 2)
        assert {i.host for i in (await target.inventory("web")).instances} == {first, second}
        lost = target.gateway(second)
        lost.uri = "qemu+unix:///system?socket=/nonexistent/as-test-sock"  # the host stops answering
        lost.mark_broken()
        await eventually(lambda: not target.ready_for("web"))
        started = time.monotonic()
        assert target.hosts_status()["hosts"][second]["state"] == "unreachable"  # type: ignore[index]
        await eventually(lambda: target.ready_for("web"), deadline=5.0)
        assert time.monotonic() - started >= 0.3
        inventory = await target.inventory("web")
        assert [i.host for i in inventory.instances] == [first]
        assert target.hosts_status()["hosts"][second]["state"] == "dead"  # type: ignore[index]
    finally:
        await target.close()
