"""Served groups end to end on one machine: libvirt's test driver runs the domains, a real HAProxy
on loopback balances, and loopback HTTP servers answer for the members (by the address each
domain is given), so every request proves who served it and when."""

from __future__ import annotations

import asyncio
import pathlib
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from autoscaler import errors, model
from autoscaler.targets import kvm
from autoscaler.targets.inventory import Record
from autoscaler.virt import ops, xml
from tests.serving import haproxy_env
from tests.serving.haproxy_env import Backend, HaproxyServer, wait_until
from tests.targets.hosts import RecordingObserver, fast_settings, host_uri, our_domain, web_policy


def served_policy(lb: HaproxyServer, port: int, **serving: Any) -> Any:
    block: dict[str, Any] = {
        "port": port,
        "balancers": [
            {"kind": "haproxy", "socket": lb.socket, "backend": "web", "check": {"inter": "200ms"}}
        ],
        "launch_timeout": "20s",
        "drain_timeout": "10s",
        "retry_interval": "100ms",
    }
    block.update(serving)
    return web_policy(serving=block)


class Addresses:
    """Gives each new domain the next free loopback member (a seam of our own: KvmTarget.address_of)."""

    def __init__(self, backends: list[Backend]) -> None:
        self.free = list(backends)
        self.by_uuid: dict[str, Backend] = {}
        self.by_name: dict[str, Backend] = {}

    async def __call__(self, record: Record) -> str | None:
        if record.uuid not in self.by_uuid:
            self.by_uuid[record.uuid] = self.by_name[record.name] = self.free.pop(0)
        return self.by_uuid[record.uuid].address


@pytest.fixture
async def lb(tmp_path: pathlib.Path) -> AsyncIterator[HaproxyServer]:
    async for server in haproxy_env.haproxy_in(tmp_path):
        yield server


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = await haproxy_env.start_backends(3)
    yield started
    for backend in started:
        await backend.stop()


class World:
    """A started target over a private test:/// host, its observer and its address seam."""

    def __init__(self, tmp_path: pathlib.Path, lb: HaproxyServer, backends: list[Backend]) -> None:
        self.tmp_path = tmp_path
        self.lb = lb
        self.backends = backends
        self.addresses = Addresses(backends)
        self.observer = RecordingObserver()
        self.policy = served_policy(lb, backends[0].port)
        self.target: kvm.KvmTarget | None = None

    async def start(self, policy: Any = None, uri: str | None = None) -> kvm.KvmTarget:
        self.policy = policy or self.policy
        self.target = kvm.KvmTarget(
            uri or host_uri(self.tmp_path),
            settings=fast_settings(balancer_interval=0.2, drain_poll=0.05),
            policies=[self.policy],
            observer=self.observer,
            address_of=self.addresses,
        )
        await self.target.start()
        return self.target

    async def inventory(self) -> model.GroupInventory:
        assert self.target is not None
        return await self.target.inventory("web")

    async def state_of(self, name: str) -> model.InstanceState | None:
        found = [i for i in (await self.inventory()).instances if i.name == name]
        return found[0].state if found else None

    async def serving(self, count: int) -> tuple[str, ...]:
        assert self.target is not None
        names = (await self.target.scale_out(self.policy, count)).done

        async def all_ready() -> bool:
            return (await self.inventory()).ready == len(names)

        await wait_until(all_ready, 15.0, "members serving")
        return names

    def backend_of(self, name: str) -> Backend:
        return self.addresses.by_name[name]

    async def domain_names(self) -> set[str]:
        assert self.target is not None
        gw = self.target.gateway(self.target.hosts[0])
        return {view.name for view in await gw.run(ops.list_domains, op="list")}


@pytest.fixture
async def world(tmp_path: pathlib.Path, lb: HaproxyServer, backends: list[Backend]) -> AsyncIterator[World]:
    made = World(tmp_path, lb, backends)
    yield made
    if made.target is not None:
        await made.target.close()


async def test_a_member_counts_and_gets_traffic_only_once_its_balancer_confirmed(world: World) -> None:
    target = await world.start()
    sick = world.backends[0]
    sick.healthy = False  # the first clone's service fails its balancer check
    [name] = (await target.scale_out(world.policy, 1)).done

    async def registering() -> bool:
        return await world.state_of(name) is model.InstanceState.REGISTERING

    await wait_until(registering, 5.0, "registering")
    record = target._cache.find("web", name)
    assert record is not None

    async def staged() -> bool:
        return f"as-web-{record.uuid[:8]}" in await world.lb.api.stats("web")

    await wait_until(staged, 5.0, "staged in HAProxy")
    result = await haproxy_env.load(world.lb.url, workers=4, seconds=1.0, cap=200)
    inventory = await world.inventory()
    assert (inventory.current, inventory.ready) == (1, 0)
    assert "waiting for the health check" in inventory.instances[0].note
    assert sick.served == 0, "a member reached traffic before its balancer confirmed it"
    assert result.ok == 0  # no member serves: HAProxy answers 503 itself
    sick.healthy = True
    await wait_until(lambda: _ready(world), 5.0, "ready once the check passes")
    assert (await haproxy_env.load(world.lb.url, workers=2, seconds=0.5, cap=20)).ok > 0
    assert sick.served > 0


async def _ready(world: World) -> bool:
    return (await world.inventory()).ready == 1


async def test_scale_in_drains_first_and_loses_no_request(world: World) -> None:
    target = await world.start()
    names = await world.serving(2)
    victim = names[1]

    async def scale_in() -> model.ScaleResult:
        await asyncio.sleep(0.5)
        result = await target.scale_in(world.policy, [victim])
        inventory = await world.inventory()
        assert inventory.current == 1, "a draining member still counted"
        assert [i.state for i in inventory.instances if i.name == victim] == [model.InstanceState.DRAINING]
        return result

    load = haproxy_env.load(world.lb.url, workers=8, seconds=3.0, cap=600, path="/slow?s=0.2")
    result, removed = await asyncio.gather(load, scale_in())
    assert removed.done == (victim,)
    assert result.failed == 0, result.errors
    assert world.backend_of(victim).served > 0
    await wait_until(lambda: _gone(world, victim), 10.0, "the drained domain destroyed")
    assert [outcome for outcome, _ in world.observer.drains] == ["idle"]


async def _gone(world: World, name: str) -> bool:
    return name not in await world.domain_names()


async def test_a_balancer_outage_during_drain_destroys_nothing_until_it_answers(world: World) -> None:
    policy = served_policy(world.lb, world.backends[0].port, drain_timeout="1s")
    target = await world.start(policy)
    [victim] = await world.serving(1)
    world.lb.stop()
    began = time.monotonic()
    await target.scale_in(policy, [victim])

    async def reported() -> bool:
        [member] = [i for i in (await world.inventory()).instances if i.name == victim]
        return "past drain_timeout" in member.note

    await wait_until(reported, 10.0, "the drain reported as unconfirmed past its timeout")
    assert time.monotonic() - began >= 1.0
    inventory = await world.inventory()
    assert inventory.current == 0
    assert [i.state for i in inventory.instances] == [model.InstanceState.DRAINING]
    assert victim in await world.domain_names(), "destroyed while the balancer could not confirm"
    assert ("drain", "lb_unreachable") in world.observer.balancer_errors
    await world.lb.start()  # it answers again (empty after its restart): the drain completes
    await wait_until(lambda: _gone(world, victim), 10.0, "the domain destroyed once the balancer answered")


async def test_a_missing_backend_fails_the_scale_out_before_any_clone(world: World) -> None:
    balancers = [{"kind": "haproxy", "socket": world.lb.socket, "backend": "nope"}]
    policy = served_policy(world.lb, world.backends[0].port, balancers=balancers)
    target = await world.start(policy)
    before = await world.domain_names()
    with pytest.raises(errors.BalancerMisconfigured, match="no backend 'nope'"):
        await target.scale_out(policy, 1)
    assert await world.domain_names() == before


async def test_a_balancer_that_never_answers_keeps_a_new_member_out_until_launch_timeout(
    world: World,
) -> None:
    policy = served_policy(world.lb, world.backends[0].port, launch_timeout="1s")
    target = await world.start(policy)
    await target.scale_out(policy, 0)  # checks the backend while HAProxy still answers
    world.lb.stop()
    [name] = (await target.scale_out(policy, 1)).done

    async def failed() -> bool:
        return await world.state_of(name) is model.InstanceState.FAILED

    await wait_until(failed, 10.0, "failed after launch_timeout")
    assert (await world.inventory()).ready == 0
    assert ("register", "lb_unreachable") in world.observer.balancer_errors
    assert world.backends[0].served == 0


async def test_an_abandoning_launch_hook_fails_the_member_before_it_registers(world: World) -> None:
    hook = {"name": "veto", "event": "launching", "exec": [sys.executable, "-c", "import sys; sys.exit(1)"]}
    policy = served_policy(world.lb, world.backends[0].port, hooks=[hook])
    target = await world.start(policy)
    [name] = (await target.scale_out(policy, 1)).done

    async def failed() -> bool:
        return await world.state_of(name) is model.InstanceState.FAILED

    await wait_until(failed, 10.0, "failed by its hook")
    assert set(await world.lb.api.stats("web")) == {"keep"}
    assert world.observer.hooks == [("launching", "abandon", "decided")]


async def test_a_reload_is_reconciled_and_strays_are_removed(world: World) -> None:
    target = await world.start()
    [name] = await world.serving(1)
    server = f"as-web-{target._cache.find('web', name).uuid[:8]}"
    await world.lb.reload()
    stray = "as-web-0badc0de"
    await world.lb.api.ask(f"add server web/{stray} 127.0.0.9:1")

    async def repaired() -> bool:
        stats = await world.lb.api.stats("web")
        return set(stats) == {"keep", server} and stats[server].status == "UP"

    await wait_until(repaired, 10.0, "our server re-added, the stray removed, 'keep' untouched")


async def test_a_restart_resumes_a_drain_with_its_original_start(world: World) -> None:
    """A daemon killed mid-drain: the next one finds the domain draining and finishes it on time."""
    policy = served_policy(world.lb, world.backends[0].port, drain_timeout="3s")
    target = await world.start(policy)
    [victim] = await world.serving(1)
    record = target._cache.find("web", victim)
    assert record is not None
    held = asyncio.create_task(haproxy_env.load(world.lb.url, workers=1, seconds=8, cap=1, path="/slow?s=8"))
    await wait_until(lambda: world.backend_of(victim).served == 1, 5.0, "a long request in flight")
    await target.scale_in(policy, [victim])
    gw = target.gateway(target.hosts[0])
    view = await gw.run(ops.get_domain, record.uuid, op="lookup")
    owner = xml.parse_metadata(view.metadata or "")
    assert owner is not None
    assert owner.phase is xml.Phase.DRAINING
    assert owner.since is not None
    await target.close()  # the daemon dies; its drain task with it
    world.target = None
    await asyncio.sleep(0.5)
    # The next daemon sees what libvirt kept: the same domain, draining since `owner.since`.
    restarted = await world.start(
        policy, host_uri(world.tmp_path, "after", domains=[our_domain(record.uuid, owner)])
    )
    assert restarted is not None

    async def gone() -> bool:
        return victim not in await world.domain_names()

    await wait_until(gone, 10.0, "the resumed drain ends")
    ended = time.time()
    assert ended >= owner.since + 3.0, "destroyed before drain_timeout"
    assert ended < owner.since + 3.0 + 2.0, "the drain clock restarted"
    assert [outcome for outcome, _ in world.observer.drains] == ["timeout"]
    held.cancel()


async def test_an_operators_maint_on_our_server_is_left_alone(world: World) -> None:
    target = await world.start()
    [name] = await world.serving(1)
    record = target._cache.find("web", name)
    assert record is not None
    server = f"as-web-{record.uuid[:8]}"
    await world.lb.api.ask(f"set server web/{server} state maint")
    stray = "as-web-0badc0de"
    await world.lb.api.ask(f"add server web/{stray} 127.0.0.9:1")

    async def reconciled() -> bool:  # a whole reconcile ran: the stray is gone
        return stray not in await world.lb.api.stats("web")

    await wait_until(reconciled, 10.0, "a reconcile of the balancer (it gives back lost servers first)")
    assert (await world.lb.api.stats("web"))[server].status == "MAINT"
