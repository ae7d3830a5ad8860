"""Election, fencing and group memory against a real 3-member etcd cluster (in one process).

What a stalled or cut-off leader would do is forced deterministically here: its election task is
frozen (its belief stays), its lease is revoked or expires, and a rival takes the key.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from autoscaler import coordination, errors, model
from autoscaler.coordination import etcd as etcd_client
from autoscaler.engine import memory
from autoscaler.engine.deps import SharedPause
from autoscaler.settings import CoordinationSettings
from tests.coordination import rig

TTL = 2


def settings(cluster: rig.EtcdCluster, name: str, prefix: str, **extra: object) -> CoordinationSettings:
    fields: dict[str, object] = {
        "endpoints": tuple(cluster.endpoints),
        "name": name,
        "prefix": prefix,
        "lease_ttl": TTL,
        "margin": 0.5,
        "request_timeout": 0.5,
        "campaign_interval": 0.1,
    }
    fields.update(extra)
    return CoordinationSettings(**fields)  # type: ignore[arg-type]


async def until(condition: Callable[[], object], limit: float, what: str) -> float:
    """Await `condition`; the seconds it took. Fails naming `what` after `limit` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit:
            raise AssertionError(f"timed out after {limit:g}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def prefix() -> str:
    return f"/t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def pair(etcd: rig.EtcdCluster, prefix: str) -> AsyncIterator[list[coordination.Coordinator]]:
    """Daemons A and B campaigning on one prefix; A starts first and so leads."""
    a = coordination.Coordinator(settings(etcd, "A", prefix))
    await a.start()
    await until(a.acting, 5, "A leads")
    b = coordination.Coordinator(settings(etcd, "B", prefix))
    await b.start()
    await until(lambda: b.election.leader == "A", 5, "B sees A")
    try:
        yield [a, b]
    finally:
        for c in (a, b):
            await c.close()


async def test_one_leader_standby_waits_and_a_clean_stop_hands_over_at_once(
    pair: list[coordination.Coordinator],
) -> None:
    a, b = pair
    assert a.hold() == "taking_over"  # until its reconcile is done, a new leader does not act
    a.settled(a.term())
    assert a.hold() is None
    assert b.hold() == "standby"
    assert b.status()["leader"] == "A"
    await a.close()
    took = await until(b.acting, 1.0, "B leads after A resigned")
    assert took < 1.0
    assert b.term() == 1


async def test_a_deposed_leader_is_fenced_by_etcd_even_while_it_still_believes(
    etcd: rig.EtcdCluster, pair: list[coordination.Coordinator]
) -> None:
    a, b = pair
    assert a._task is not None
    a._task.cancel()  # freeze A's view: no keepalive, no campaign (a stall between check and act)
    revoker = etcd_client.Client(etcd.endpoints)
    await revoker.revoke(a.election.lease)  # as if A's lease had expired meanwhile
    await revoker.close()
    await until(b.acting, 3, "B takes the key")
    assert a.election.holding()  # A's local deadline alone would still let it act
    with pytest.raises(errors.Fenced, match="changed hands"):
        await a.fence.admit("define", "qemu:///x")
    assert not a.acting()
    assert a.fence.refused["define"] == 1
    assert await b.fence.admit("define", "qemu:///x") > time.monotonic()


async def test_a_leader_stalled_past_its_lease_does_not_act_when_it_wakes(
    pair: list[coordination.Coordinator],
) -> None:
    a, b = pair
    time.sleep(TTL + 1.0)  # noqa: ASYNC251 (the stall under test: the whole loop stops, like SIGSTOP)
    with pytest.raises(errors.Fenced):
        await a.fence.admit("start", "qemu:///x")  # the first thing A tries on waking
    # Both stalled here (one process); whoever campaigns first after waking leads, once.
    await until(lambda: a.acting() != b.acting(), TTL + 2, "one leader again")
    assert a.term() + b.term() == 2


async def test_group_memory_follows_the_leader_and_a_deposed_one_cannot_overwrite_it(
    etcd: rig.EtcdCluster, pair: list[coordination.Coordinator]
) -> None:
    a, b = pair
    saved = memory.Saved(model.GroupMemory(changes=(model.Change(100.0, 2),), last_up_at=100.0), "ops")
    await a.store.save("web", saved)
    await b.store.save("web", memory.Saved(model.GroupMemory()))  # a standby's save is skipped
    assert await b.store.load("web") == saved
    assert a._task is not None
    a._task.cancel()
    revoker = etcd_client.Client(etcd.endpoints)
    await revoker.revoke(a.election.lease)
    await revoker.close()
    await until(b.acting, 3, "B takes over")
    with pytest.raises(OSError, match="no longer leads"):
        await a.store.save("web", memory.Saved(model.GroupMemory()))
    assert await b.store.load("web") == saved


async def test_losing_one_member_of_three_changes_nothing(etcd: rig.EtcdCluster, prefix: str) -> None:
    # A TTL of 3 s with a 0.5 s margin leaves 2.5 s for the raft election that follows the loss
    # of the etcd leader (the test cluster elects within about 1 s).
    a = coordination.Coordinator(settings(etcd, "A", prefix, lease_ttl=3))
    b = coordination.Coordinator(settings(etcd, "B", prefix, lease_ttl=3))
    await a.start()
    await until(a.acting, 5, "A leads")
    await b.start()
    await until(lambda: b.election.leader == "A", 5, "B sees A")
    leader = next(i for i in range(3) if etcd.is_leader(i))
    etcd.kill(leader)  # the hardest member to lose: raft must elect a new leader
    try:
        end = time.monotonic() + 2 * 3 + 1
        while time.monotonic() < end:
            assert a.acting(), "the leader lost its lease over one dead member"
            assert b.hold() == "standby"
            await asyncio.sleep(0.05)
        assert await a.fence.admit("define", "qemu:///x") > 0
        assert a.unready() is None
    finally:
        etcd.start(leader)
        await asyncio.to_thread(etcd.wait_healthy, [leader])
        for c in (a, b):
            await c.close()


async def test_losing_quorum_stops_every_action_and_recovery_resumes_them(
    etcd: rig.EtcdCluster, pair: list[coordination.Coordinator]
) -> None:
    a, b = pair
    etcd.kill(1)
    etcd.kill(2)
    try:
        await until(lambda: not a.acting(), TTL + 1, "A stops acting")
        both = lambda: a.hold() == b.hold() == "etcd_unavailable"  # noqa: E731
        await until(both, TTL + 2, "both say etcd is unavailable")
        for c in (a, b):
            assert c.hold() == "etcd_unavailable"
            assert "etcd unavailable" in (c.unready() or "")
            with pytest.raises(errors.Fenced):
                await c.fence.admit("define", "qemu:///x")
    finally:
        etcd.start(1)
        etcd.start(2)
    await asyncio.to_thread(etcd.wait_healthy)
    await until(lambda: a.acting() or b.acting(), 15, "a leader again after quorum returned")
    assert a.unready() is None
    assert b.unready() is None


async def test_unreachable_etcd_at_start_fails_clearly_when_asked_to(prefix: str) -> None:
    dead = [f"http://127.0.0.1:{port}" for port in rig.free_ports(2)]
    c = coordination.Coordinator(
        CoordinationSettings(
            endpoints=tuple(dead), prefix=prefix, on_unreachable_at_start="fail", start_timeout=0.5
        )
    )
    with pytest.raises(errors.CoordinationUnavailable, match="on_unreachable_at_start: fail"):
        await c.start()
    await c.close()


async def test_a_pause_any_daemon_stores_is_read_by_every_other(pair: list[coordination.Coordinator]) -> None:
    a, b = pair
    assert await a.pauses.read("web") == SharedPause(None, 0)
    paused_at = await b.pauses.write("web", "maintenance")  # a standby may write it: it is not fenced
    await read_until(a, SharedPause("maintenance", paused_at))
    resumed_at = await a.pauses.write("web", None)
    assert resumed_at > paused_at
    await read_until(b, SharedPause(None, resumed_at))


async def read_until(daemon: coordination.Coordinator, expected: SharedPause) -> None:
    """Read the pause until it is `expected` (a watched change arrives milliseconds after the write)."""
    end = time.monotonic() + 2
    while (found := await daemon.pauses.read("web")) != expected:
        assert time.monotonic() < end, f"{daemon.name} reads {found}, not {expected}"
        await asyncio.sleep(0.01)
