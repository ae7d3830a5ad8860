"""The HAProxy driver against a real HAProxy 2.6 on loopback, with loopback servers as members."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autoscaler import errors
from autoscaler.policy import serving as serving_spec
from autoscaler.serving import Member, haproxy
from tests.serving import haproxy_env
from tests.serving.haproxy_env import Backend, HaproxyServer, wait_until

UUIDS = ["1a2b3c4d-0000-4000-8000-000000000001", "2b3c4d5e-0000-4000-8000-000000000002"]


@pytest.fixture
async def lb(tmp_path: Path) -> AsyncIterator[HaproxyServer]:
    async for server in haproxy_env.haproxy_in(tmp_path):
        yield server


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = await haproxy_env.start_backends(2)
    yield started
    for backend in started:
        await backend.stop()


def driver(lb: HaproxyServer, port: int, **changes: object) -> haproxy.Haproxy:
    fields: dict[str, object] = {
        "kind": "haproxy",
        "socket": lb.socket,
        "backend": "web",
        "check": {"inter": 0.2, "rise": 2, "fall": 2},
    }
    fields.update(changes)
    return haproxy.Haproxy(serving_spec.Haproxy.model_validate(fields), "web", port)


def member(backend: Backend, index: int) -> Member:
    return backend.member(f"as-web-{UUIDS[index][:8]}", UUIDS[index])


async def confirmed(balancer: haproxy.Haproxy, m: Member, deadline: float = 10.0) -> None:
    async def done() -> bool:
        return await balancer.register(m)

    await wait_until(done, deadline, f"{m.name} confirmed", step=0.1)


async def test_a_new_server_gets_no_traffic_until_its_check_passed(
    lb: HaproxyServer, backends: list[Backend]
) -> None:
    """Staged in DRAIN: while the member's check fails, requests never reach it."""
    first, second = backends
    balancer = driver(lb, first.port)
    await confirmed(balancer, member(first, 0))
    second.healthy = False
    assert not await balancer.register(member(second, 1))
    result = await haproxy_env.load(lb.url, workers=4, seconds=1.5, cap=300)
    assert result.failed == 0
    assert result.ok > 20
    assert second.served == 0, "a member whose check never passed got traffic"
    for _ in range(10):
        assert not await balancer.register(member(second, 1))
    second.healthy = True
    await confirmed(balancer, member(second, 1))
    await haproxy_env.load(lb.url, workers=2, seconds=1.0, cap=40)
    assert second.served > 0


async def test_every_server_has_an_explicit_stable_id(lb: HaproxyServer, backends: list[Backend]) -> None:
    balancer = driver(lb, backends[0].port)
    await balancer.register(member(backends[0], 0))
    stats = await lb.api.stats("web")
    assert stats["as-web-1a2b3c4d"].server_id == haproxy.server_id(UUIDS[0])


async def test_drain_then_remove_loses_no_request(lb: HaproxyServer, backends: list[Backend]) -> None:
    """Drain, wait for no sessions, maint and delete, under load of slow requests: no failure."""
    first, second = backends
    balancer = driver(lb, first.port)
    leaving = member(second, 1)
    await confirmed(balancer, member(first, 0))
    await confirmed(balancer, leaving)

    async def scale_in() -> None:
        await asyncio.sleep(0.5)
        await balancer.drain(leaving)
        await wait_until(lambda: balancer.idle(leaving), 10.0, "no sessions left")
        await balancer.remove(leaving, force=False)
        await second.stop()  # the domain is destroyed

    load = haproxy_env.load(lb.url, workers=8, seconds=2.5, cap=400, path="/slow?s=0.2")
    result, _ = await asyncio.gather(load, scale_in())
    assert result.failed == 0, result.errors
    assert second.served > 0
    assert result.ok > 30
    assert "as-web-2b3c4d5e" not in await lb.api.stats("web")


async def test_removing_without_drain_fails_requests(lb: HaproxyServer, backends: list[Backend]) -> None:
    """The control: killing a member that still takes traffic fails requests, so the test above can fail."""
    first, second = backends
    balancer = driver(lb, first.port)
    await confirmed(balancer, member(first, 0))
    await confirmed(balancer, member(second, 1))

    async def kill() -> None:
        await asyncio.sleep(0.5)
        await second.stop()

    load = haproxy_env.load(lb.url, workers=8, seconds=2.0, cap=400, path="/slow?s=0.2")
    result, _ = await asyncio.gather(load, kill())
    assert result.failed > 0


async def test_a_reload_loses_dynamic_servers_and_registration_adds_them_again(
    lb: HaproxyServer, backends: list[Backend]
) -> None:
    balancer = driver(lb, backends[0].port)
    m = member(backends[0], 0)
    await confirmed(balancer, m)
    await lb.reload()
    assert "as-web-1a2b3c4d" not in await lb.api.stats("web")
    assert not await balancer.register(m), "a re-added server is staged again, not UP at once"
    await confirmed(balancer, m)


async def test_prune_takes_out_our_strays_and_never_touches_others(
    lb: HaproxyServer, backends: list[Backend]
) -> None:
    balancer = driver(lb, backends[0].port)
    await confirmed(balancer, member(backends[0], 0))
    await balancer.register(member(backends[1], 1))
    removed = await balancer.prune([member(backends[0], 0)])
    assert removed == ["as-web-2b3c4d5e"]
    assert set(await lb.api.stats("web")) == {"keep", "as-web-1a2b3c4d"}


async def test_verify_names_template_mode_for_a_static_backend(lb: HaproxyServer) -> None:
    await driver(lb, 80).verify()
    with pytest.raises(errors.BalancerMisconfigured, match="server-template"):
        await driver(lb, 80, backend="slots").verify()
    with pytest.raises(errors.BalancerMisconfigured, match="no backend 'nope'"):
        await driver(lb, 80, backend="nope").verify()
    assert "as-web-probe" not in await lb.api.stats("web")


async def test_template_mode_claims_and_frees_slots(lb: HaproxyServer, backends: list[Backend]) -> None:
    balancer = driver(lb, backends[0].port, backend="slots", mode="template", server_prefix="tpl")
    await balancer.verify()
    m = member(backends[0], 0)
    await confirmed(balancer, m)
    stats = await lb.api.stats("slots")
    claimed = [s for s in stats.values() if s.address == f"{m.address}:{m.port}"]
    assert [s.status for s in claimed] == ["UP"]
    await balancer.drain(m)
    assert await balancer.idle(m)
    await balancer.remove(m, force=False)
    assert all(s.status == "MAINT" for s in (await lb.api.stats("slots")).values())


async def test_an_unreachable_balancer_is_a_temporary_error(tmp_path: Path) -> None:
    config = serving_spec.Haproxy(kind="haproxy", socket=str(tmp_path / "none.sock"), backend="web")
    balancer = haproxy.Haproxy(config, "web", 80)
    with pytest.raises(errors.BalancerUnreachable):
        await balancer.register(Member("as-web-1", UUIDS[0], "127.0.0.2", 80))


async def test_missing_lists_only_members_without_any_server(
    lb: HaproxyServer, backends: list[Backend]
) -> None:
    balancer = driver(lb, backends[0].port)
    held, lost = member(backends[0], 0), member(backends[1], 1)
    await balancer.register(held)
    await lb.api.ask("set server web/as-web-1a2b3c4d state maint")
    assert await balancer.missing([held, lost]) == [lost]
