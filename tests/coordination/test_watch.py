"""A standby follows the leader key through a watch, against a real 3-member etcd cluster.

The standby's safety poll is set far beyond every limit here, so a take-over within a second can
only come from the watch; the watch is broken by killing and restarting etcd members and by
compaction, and must come back without ever making a second leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from autoscaler import coordination, model
from autoscaler.coordination import etcd as etcd_client
from autoscaler.engine import memory
from autoscaler.engine.deps import SharedPause
from tests.coordination import rig
from tests.coordination.test_election import settings, until

TTL = 3
"""Seconds; long enough for the leader to ride out the raft election that losing a member causes."""
POLL = 60.0
"""The standby's safety poll: never reached by these tests."""


@pytest.fixture
def prefix() -> str:
    return f"/w-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def pair(etcd: rig.EtcdCluster, prefix: str) -> AsyncIterator[list[coordination.Coordinator]]:
    """Daemons A and B; one leads, the other watches; a sampler checks they never both lead."""
    daemons = [
        coordination.Coordinator(
            settings(etcd, name, prefix, lease_ttl=TTL, campaign_interval=0.1, standby_poll_interval=POLL)
        )
        for name in ("A", "B")
    ]
    for daemon in daemons:
        await daemon.start()
    overlaps: list[float] = []
    sampler = asyncio.create_task(_never_both(daemons, overlaps))
    try:
        await until(lambda: _roles(daemons) is not None, 5, "one leader, one watching standby")
        yield daemons
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        for daemon in daemons:
            await daemon.close()
    assert not overlaps, f"two daemons led at once at {overlaps}"


async def _never_both(daemons: list[coordination.Coordinator], overlaps: list[float]) -> None:
    while True:
        running = [d for d in daemons if d._task is not None and not d._task.done()]
        if sum(bool(d.election.token) and d.election.holding() for d in running) > 1:
            overlaps.append(time.monotonic())
        await asyncio.sleep(0.01)


def _roles(daemons: list[coordination.Coordinator]) -> tuple[coordination.Coordinator, ...] | None:
    """(leader, standby) once exactly one leads and the other's watch is open and names it."""
    leading = [d for d in daemons if d.acting()]
    if len(leading) != 1:
        return None
    standby = next(d for d in daemons if d is not leading[0])
    follower = standby.election.follower
    watching = follower is not None and follower.endpoint is not None
    if not watching or standby.election.leader != leading[0].name:
        return None
    return leading[0], standby


async def _roles_now(daemons: list[coordination.Coordinator]) -> tuple[coordination.Coordinator, ...]:
    await until(lambda: _roles(daemons) is not None, 20, "one leader, one watching standby")
    roles = _roles(daemons)
    assert roles is not None
    return roles


async def _lease_lost(etcd: rig.EtcdCluster, leader: coordination.Coordinator) -> None:
    """The leader stops (its task frozen) and its lease ends in etcd: the key is deleted."""
    assert leader._task is not None
    leader._task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leader._task
    revoker = etcd_client.Client(etcd.endpoints)
    try:
        await revoker.revoke(leader.election.lease)
    finally:
        await revoker.close()


async def test_an_idle_standby_does_not_poll_and_takes_over_through_its_watch(
    etcd: rig.EtcdCluster, pair: list[coordination.Coordinator]
) -> None:
    leader, standby = await _roles_now(pair)
    campaigns = standby.election.campaigns
    await asyncio.sleep(1.0)  # an observation window: a polling standby would campaign 10 times
    assert standby.election.campaigns == campaigns
    await _lease_lost(etcd, leader)
    took = await until(standby.acting, 1.0, "the standby leads after the leader key was deleted")
    assert took < 1.0
    assert standby.election.campaigns <= campaigns + 2


async def test_a_watch_broken_by_an_etcd_restart_resumes_and_still_sees_the_deletion(
    etcd: rig.EtcdCluster, pair: list[coordination.Coordinator]
) -> None:
    _, standby = await _roles_now(pair)
    assert standby.election.follower is not None
    reconnects = standby.election.follower.reconnects
    for index in range(3):  # the whole cluster crashes and comes back with its data
        etcd.kill(index)
    for index in range(3):
        etcd.start(index)
    await asyncio.to_thread(etcd.wait_healthy)
    leader, standby = await _roles_now(pair)
    assert standby.election.follower is not None
    assert standby.election.follower.reconnects > reconnects
    assert standby.snapshot().watch_reconnects["leader_key"] == standby.election.follower.reconnects
    await _lease_lost(etcd, leader)
    await until(standby.acting, 1.0, "the standby leads through its resumed watch")


async def test_a_watch_resumed_after_compaction_makes_the_standby_check_and_go_on_watching(
    etcd: rig.EtcdCluster, prefix: str, pair: list[coordination.Coordinator]
) -> None:
    leader, standby = await _roles_now(pair)
    follower = standby.election.follower
    assert follower is not None
    assert follower.endpoint is not None
    client = etcd_client.Client(etcd.endpoints)
    try:
        for n in range(5):  # revisions the idle watch never delivered (it only asks for deletions)
            result = await client.txn([], [etcd_client.put(f"{prefix}/other", str(n))])
        await client.call("kv/compaction", {"revision": str(result.revision), "physical": True})
    finally:
        await client.close()
    watched = etcd.endpoints.index(follower.endpoint)
    campaigns = standby.election.campaigns
    etcd.kill(watched)  # the stream breaks; it resumes elsewhere from a revision compacted away
    try:
        await until(lambda: follower.compactions == 1, 5, "the resumed watch reports the compaction")
        await until(lambda: standby.election.campaigns > campaigns, 1, "the standby checks the key")
        assert follower.next_revision >= result.revision
        assert standby.hold() == "standby"
        await until(lambda: follower.endpoint is not None, 5, "the watch is open again")
        await _lease_lost(etcd, leader)
        await until(standby.acting, 1.0, "the standby leads through the watch resumed after compaction")
    finally:
        etcd.start(watched)
        await asyncio.to_thread(etcd.wait_healthy, [watched])


async def test_a_watch_held_by_a_hung_member_moves_with_the_standbys_requests(
    etcd: rig.EtcdCluster, pair: list[coordination.Coordinator]
) -> None:
    leader, standby = await _roles_now(pair)
    follower = standby.election.follower
    assert follower is not None
    assert follower.endpoint is not None
    hung = etcd.endpoints.index(follower.endpoint)
    process = etcd.members[hung].process
    assert process is not None
    process.send_signal(signal.SIGSTOP)  # the stream stays open and goes silent
    try:
        await _lease_lost(etcd, leader)
        # the standby's keepalive times out on the hung member (every TTL / 3, 0.5 s timeout),
        # its requests go to the next member, and so does its watch
        await until(standby.acting, TTL, "the standby leads although its watch was on a hung member")
        assert follower.reconnects >= 1
    finally:
        process.send_signal(signal.SIGCONT)
    await asyncio.to_thread(etcd.wait_healthy, [hung])


async def test_pauses_are_followed_through_the_watch_not_read_from_etcd_each_time(
    pair: list[coordination.Coordinator],
) -> None:
    leader, standby = await _roles_now(pair)
    board = leader.pauses
    assert await board.read("web") == SharedPause(None, 0)
    assert board.follower is not None
    await until(lambda: board.follower is not None and board.follower.endpoint is not None, 5, "watching")
    reads = board.reads
    written = await standby.pauses.write("web", "maintenance")
    await leader.store.save("web", memory.Saved(model.GroupMemory()))  # shares the prefix
    end = time.monotonic() + 2
    while (found := await board.read("web")) != SharedPause("maintenance", written):
        assert time.monotonic() < end, f"the leader still reads {found}"
        await asyncio.sleep(0.01)
    assert board.reads == reads, "the leader asked etcd although its watch had the pause"
    shown = board.shown("web")
    assert shown is not None
    assert shown["by"] == standby.name
    assert time.time() - 60 < shown["at"] <= time.time()
    resumed = await standby.pauses.write("web", None)
    await until(lambda: board.shown("web") is None, 2, "the resume seen through the watch")
    assert await board.read("web") == SharedPause(None, resumed)
    assert board.reads == reads
