"""The tcp readiness probe: the connect itself on loopback, and the probe's use of it on test:///.

Guest addresses come from libvirt (the test driver invents 192.168.122.x leases), and nothing but
loopback may be connected to, so the KvmTarget tests swap `tcp_open` for a port the test opens
and closes; `tcp_open` itself is tested against real loopback sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import pathlib
import socket
from collections.abc import AsyncIterator

import pytest

from autoscaler import model
from autoscaler.policy import spec
from autoscaler.targets import kvm, readiness
from tests.targets.hosts import eventually, fast_settings, host_uri, web_policy

PORT = 8080


async def test_tcp_open_is_true_for_a_listening_port() -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        assert await readiness.tcp_open("127.0.0.1", port, 2.0)


async def test_tcp_open_is_false_for_a_closed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: the connect is refused
        assert not await readiness.tcp_open("127.0.0.1", port, 2.0)


@dataclasses.dataclass
class GuestPort:
    """Stands in for the guest's service port: answers as `open` says, and records every ask."""

    open: bool = False
    asked: list[tuple[str, int, bool]] = dataclasses.field(default_factory=list)

    async def connect(self, host: str, port: int, seconds: float) -> bool:
        self.asked.append((host, port, self.open))
        return self.open


@pytest.fixture
def guest_port(monkeypatch: pytest.MonkeyPatch) -> GuestPort:
    port = GuestPort()
    monkeypatch.setattr(readiness, "tcp_open", port.connect)
    return port


@pytest.fixture
async def target(tmp_path: pathlib.Path) -> AsyncIterator[kvm.KvmTarget]:
    started = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[tcp_policy()])
    await started.start()
    yield started
    await started.close()


def tcp_policy() -> spec.GroupPolicy:
    return web_policy(readiness={"probe": "tcp", "port": PORT, "interval": 0.05, "failures": 3})


async def state_of(target: kvm.KvmTarget) -> model.InstanceState:
    [instance] = (await target.inventory("web")).instances
    return instance.state


async def test_booting_until_the_port_answers(target: kvm.KvmTarget, guest_port: GuestPort) -> None:
    await target.scale_out(tcp_policy(), 1)
    await eventually(lambda: len(guest_port.asked) >= 2)
    assert await state_of(target) is model.InstanceState.BOOTING

    guest_port.open = True
    await eventually(lambda: target.provision_seconds("web") is not None)

    assert await state_of(target) is model.InstanceState.READY
    host, port, _ = guest_port.asked[-1]
    assert ipaddress.ip_address(host).version == 4  # the guest's lease, as libvirt reports it
    assert port == PORT


async def test_ready_member_failing_the_probe_in_a_row_is_failed(
    target: kvm.KvmTarget, guest_port: GuestPort
) -> None:
    guest_port.open = True
    await target.scale_out(tcp_policy(), 1)
    await eventually(lambda: target.provision_seconds("web") is not None)

    guest_port.open = False
    await eventually(lambda: any(r.failed for r in target._cache.group("web")))

    closed = sum(1 for _h, _p, was_open in guest_port.asked if not was_open)
    assert closed >= 3  # the policy's `failures`, not the first miss
    assert await state_of(target) is model.InstanceState.FAILED
