"""Three real daemons, a 3-member etcd cluster and two private libvirtds standing for two hosts.

Each scenario hits the leader or etcd the way production does (SIGKILL, SIGSTOP, SIGTERM, dead
members) and checks from both sides: the daemons' own `action_admitted` lines (one per mutating
libvirt call that passed the fence) and libvirt's list of domains and overlays.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from autoscaler.coordination import etcd as etcd_client
from autoscaler.coordination.ledger import MIGRATED_SUFFIX, EtcdLedger
from autoscaler.runtime import status
from autoscaler.targets import ownership
from autoscaler.virt import xml
from tests.coordination import daemons, rig
from tests.coordination.daemons import Cluster, settle

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.slow]
NAMES = ["A", "B", "C"]


@pytest.fixture(scope="module")
def ha(etcd: rig.EtcdCluster) -> Iterator[Cluster]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-ha-"))
    workdir.chmod(0o755)
    try:
        with (
            rig.hosts(workdir / "hosts") as hosts,
            daemons.cluster(workdir, etcd, hosts, f"/ha-{uuid.uuid4().hex[:6]}") as found,
        ):
            found.set_size(0)
            for name in NAMES:
                found.start(name)
            for daemon in found.daemons.values():
                found.wait_started(daemon)
            found.wait_leader(10)
            yield found
    finally:
        if not os.environ.get("AUTOSCALER_KEEP_TEST_DIRS"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def cluster(ha: Cluster) -> Cluster:
    """The daemons all running, one leader, the group empty; the same again afterwards."""
    for name in NAMES:
        if not ha.daemons[name].alive:
            ha.start(name)
    for daemon in ha.daemons.values():
        ha.wait_started(daemon)
    ha.set_size(0)
    settle(ha, 0, 30)
    ha.wait_leader(10)
    return ha


def _wait_actions(c: Cluster, before: dict[str, int], names: list[str], timeout: float) -> float:
    """Seconds until one of `names` made an action after `before`."""
    start = time.monotonic()
    rig.wait_for(
        lambda: any(c.daemons[n].actions() > before.get(n, 0) for n in names), timeout, "an action", 0.02
    )
    return time.monotonic() - start


def _leadership_events(cluster: Cluster) -> int:
    """Leadership gained or lost by any daemon so far (from their logs)."""
    kinds = ("leadership_acquired", "leadership_lost")
    return sum(len(d.events(kind)) for d in cluster.daemons.values() for kind in kinds)


def _defines(c: Cluster) -> int:
    return sum(1 for d in c.daemons.values() for e in d.events("action_admitted") if e.get("op") == "define")


def test_sigterm_hands_over_within_one_second(cluster: Cluster) -> None:
    leader = cluster.wait_leader(5)
    cluster.daemons[leader].signal(signal.SIGTERM)
    start = time.monotonic()
    others = [n for n in NAMES if n != leader]
    successor = cluster.wait_leader(3, among=others)
    took = time.monotonic() - start
    assert took < 1.0, f"hand-over took {took:.2f}s"
    assert cluster.daemons[leader].process is not None
    assert cluster.daemons[leader].process.wait(timeout=20) == 0
    assert successor in others


def test_sigkill_mid_scale_out_a_standby_finishes_it_with_no_double_and_no_orphan(
    cluster: Cluster,
) -> None:
    ttl = cluster.ttl
    defines_before = _defines(cluster)
    leader = cluster.wait_leader(5)
    cluster.set_size(4, step=1.0)
    rig.wait_for(lambda: len(cluster.members()) >= 1, 20, "the first new member", 0.05)
    before = cluster.total_actions()
    cluster.daemons[leader].signal(signal.SIGKILL)
    others = [n for n in NAMES if n != leader]
    took = _wait_actions(cluster, before, others, ttl + 2 + 1)
    assert took <= ttl + 2, f"a standby acted only after {took:.2f}s"
    settle(cluster, 4, 40)
    assert _defines(cluster) - defines_before == 4, "one decision produced two clones"
    assert daemons.orphans(cluster) == []


def test_a_leader_stopped_past_its_lease_performs_no_action_when_continued(cluster: Cluster) -> None:
    ttl = cluster.ttl
    leader = cluster.wait_leader(5)
    stalled = cluster.daemons[leader]
    cluster.set_size(3, step=1.0)
    rig.wait_for(lambda: len(cluster.members()) >= 1, 20, "the scale-out under way", 0.05)
    stalled.signal(signal.SIGSTOP)
    frozen = stalled.actions()
    time.sleep(2 * ttl)  # the stall under test (the process cannot be waited on meanwhile)
    successor = cluster.wait_leader(5, among=[n for n in NAMES if n != leader])
    stalled.signal(signal.SIGCONT)
    settle(cluster, 3, 30)
    rig.wait_for(lambda: stalled.status() is not None, 10, "the stalled daemon answers again")
    time.sleep(1.0)  # it would have acted by now (ticks every second); it must not have
    assert stalled.actions() == frozen, "the stalled leader acted after it woke"
    assert cluster.leaders() == [successor]
    assert len(cluster.members()) == 3
    assert daemons.orphans(cluster) == []


def test_losing_one_etcd_member_changes_nothing(cluster: Cluster) -> None:
    leader = cluster.wait_leader(5)
    changes = _leadership_events(cluster)
    lost = next(i for i in range(3) if cluster.etcd.is_leader(i))
    cluster.etcd.kill(lost)  # the etcd raft leader: the hardest member to lose
    try:
        cluster.set_size(2, step=0.5)
        settle(cluster, 2, 20)
        end = time.monotonic() + cluster.ttl * 2
        while time.monotonic() < end:
            assert all(d.get("/readyz")[0] == 200 for d in cluster.daemons.values())
            time.sleep(0.2)
        assert _leadership_events(cluster) == changes, "leadership moved over one lost member"
        assert cluster.leaders() == [leader]
    finally:
        cluster.etcd.start(lost)
        cluster.etcd.wait_healthy([lost])


def test_losing_quorum_stops_every_action_until_it_returns(cluster: Cluster) -> None:
    ttl = cluster.ttl
    cluster.etcd.kill(1)
    cluster.etcd.kill(2)
    try:  # the member left has no quorum: every daemon's requests fail or time out
        rig.wait_for(lambda: not cluster.leaders(), ttl + 2, "no leader without quorum", 0.1)
        before = cluster.total_actions()
        ticks = {n: d.status()["groups"][0]["last_decision"]["tick"] for n, d in cluster.daemons.items()}
        cluster.set_size(2, step=0.5)
        time.sleep(2 * ttl)
        assert cluster.total_actions() == before, "a daemon acted without quorum"
        assert cluster.members() == []
        for name, daemon in cluster.daemons.items():
            assert daemon.alive
            code, why = daemon.get("/readyz")
            assert code == 503
            assert "etcd unavailable" in why
            group = daemon.status()["groups"][0]
            assert group["last_decision"]["tick"] > ticks[name], "evaluation stopped"
            assert group["last_decision"]["outcome"] == "held_etcd_unavailable"
    finally:
        cluster.etcd.start(1)
        cluster.etcd.start(2)
    cluster.etcd.wait_healthy()
    settle(cluster, 2, 30)
    cluster.wait_leader(10)


def test_a_dead_hosts_members_are_unknown_then_replaced_elsewhere(cluster: Cluster) -> None:
    first, second = cluster.hosts
    cluster.set_size(2, step=0.5)
    settle(cluster, 2, 20)
    assert (len(first.domains(daemons.PREFIX)), len(second.domains(daemons.PREFIX))) == (1, 1), "not spread"
    leader = cluster.daemons[cluster.wait_leader(5)]
    defines = _defines(cluster)
    second.stop()  # the host stops answering; its QEMU keeps running
    try:
        unknown_until = time.monotonic() + cluster.host_dead_after - 1.0
        while time.monotonic() < unknown_until:  # unknown, not gone: nothing replaces it yet
            assert _defines(cluster) == defines, "replaced before host_dead_after"
            assert not leader.events("host_declared_dead")
            time.sleep(0.2)
        rig.wait_for(lambda: leader.events("host_declared_dead"), 15, "the host declared dead")
        rig.wait_for(lambda: len(first.domains(daemons.PREFIX)) == 2, 20, "the replacement on the live host")
        hosts = (leader.status() or {})["hosts"]["hosts"]
        assert hosts[second.uri]["state"] == "dead"
    finally:
        second.restart()
    rig.wait_for(lambda: leader.events("host_back"), 30, "the host back")
    settle(cluster, 2, 30)  # the group, one above its size again, shrinks back


def test_a_pause_sent_to_a_standby_holds_the_leader_and_outlives_it(cluster: Cluster) -> None:
    leader = cluster.wait_leader(5)
    standby = next(n for n in NAMES if n != leader)
    code, body = cluster.daemons[standby].post(f"/groups/{daemons.GROUP}/pause", {"reason": "maintenance"})
    assert code == 200, body
    acting = cluster.daemons[leader]
    rig.wait_for(lambda: acting.group()["paused"] == "maintenance", 5, "the leader following the pause")
    assert acting.group()["paused_by"] == standby  # who took the pause, and when, for every daemon
    assert time.time() - 60 < acting.group()["paused_at"] <= time.time()
    assert f"paused by operator: maintenance (through daemon {standby}, " in status.render(
        acting.status() or {}
    )
    defines = _defines(cluster)
    cluster.set_size(2, step=0.5)
    tick = acting.group()["last_decision"]["tick"]
    held = lambda d: (d.group()["last_decision"] or {}).get("desired") == 2  # noqa: E731
    rig.wait_for(lambda: held(acting) and acting.group()["last_decision"]["tick"] > tick + 1, 10, "decisions")
    assert acting.group()["state"] == "paused"
    assert _defines(cluster) == defines, "the leader acted on a group paused through a standby"

    acting.signal(signal.SIGKILL)
    successor = cluster.daemons[cluster.wait_leader(cluster.ttl + 3, among=[n for n in NAMES if n != leader])]
    rig.wait_for(lambda: successor.group()["state"] == "paused", 5, "the new leader paused")
    tick = successor.group()["last_decision"]["tick"]
    rig.wait_for(
        lambda: successor.group()["last_decision"]["tick"] > tick + 1, 10, "the new leader's decisions"
    )
    assert successor.group()["paused"] == "maintenance"
    assert _defines(cluster) == defines, "the new leader forgot the pause"
    assert cluster.members() == []

    resumer = next(d for n, d in cluster.daemons.items() if d.alive and d is not successor)
    code, body = resumer.post(f"/groups/{daemons.GROUP}/resume")
    assert code == 200, body
    settle(cluster, 2, 20)
    assert successor.group()["paused"] is None


def test_a_new_leader_deletes_an_overlay_its_killed_predecessor_recorded_and_no_other(
    cluster: Cluster,
) -> None:
    host = cluster.hosts[0]
    ours, foreign = (xml.overlay_name(daemons.GROUP, str(uuid.uuid4())) for _ in range(2))
    try:
        for name in (ours, foreign):  # as a leader killed between creating the overlay and the domain
            host.virsh("vol-create-as", "as-pool", name, "1M", "--format", "qcow2")
        asyncio.run(_recorded_by_the_leader(cluster, host.uri, ours))
        leader = cluster.wait_leader(5)
        cluster.daemons[leader].signal(signal.SIGKILL)
        cluster.wait_leader(cluster.ttl + 5, among=[n for n in NAMES if n != leader])
        rig.wait_for(lambda: ours not in host.overlays(), 15, "the recorded orphan deleted by the new leader")
        assert foreign in host.overlays(), "an overlay no daemon recorded was deleted"
    finally:
        for name in (ours, foreign):
            host.virsh("vol-delete", name, "--pool", "as-pool", check=False)


async def _recorded_by_the_leader(cluster: Cluster, host: str, name: str) -> None:
    """The intent a leader writes to etcd before it creates an overlay (a minute ago)."""
    client = etcd_client.Client(cluster.etcd.endpoints)
    try:
        ledger = EtcdLedger(client, cluster.prefix, clock=lambda: time.time() - 60)
        await ledger.intend(host, "as-pool", name, "overlay", name.removesuffix(".qcow2")[-36:])
    finally:
        await client.close()


def test_a_daemon_moves_its_file_ledger_into_etcd_when_it_first_leads(cluster: Cluster) -> None:
    host = cluster.hosts[0]
    heir = next(n for n in NAMES if n != cluster.wait_leader(5))
    cluster.daemons[heir].stop()
    domain_uuid = str(uuid.uuid4())
    name = xml.overlay_name(daemons.GROUP, domain_uuid)
    directory = cluster.workdir / f"state-{heir}" / "volumes"
    try:  # recorded by this daemon before coordination was enabled, its domain long gone
        host.virsh("vol-create-as", "as-pool", name, "1M", "--format", "qcow2")
        files = ownership.FileLedger(directory, clock=lambda: time.time() - 60)
        asyncio.run(files.intend(host.uri, "as-pool", name, "overlay", domain_uuid))
        cluster.wait_started(cluster.start(heir))
        for other in NAMES:
            if other != heir:
                cluster.daemons[other].stop()
        cluster.wait_leader(cluster.ttl + 5, among=[heir])
        rig.wait_for(lambda: name not in host.overlays(), 15, "the migrated record's orphan deleted")
        assert not directory.exists()
        assert list(directory.parent.glob(f"volumes{MIGRATED_SUFFIX}-*")), "the moved records are kept"
    finally:
        host.virsh("vol-delete", name, "--pool", "as-pool", check=False)
