"""How fast a standby takes over when the leader is SIGKILLed, and whether anything acts twice.

Starts a 3-member etcd cluster on loopback, two private libvirtds standing for two hosts, and two
real daemons (the same rig as tests/coordination). Each round changes the group's size (so the
leader is busy cloning or destroying), waits a random 0-1.5 s (the kill lands anywhere in the
keepalive cycle), SIGKILLs the leader, and times until the standby's /status says it leads. The
killed daemon is then restarted as the new standby and the group must settle at its size with no
orphan overlay. Then a few rounds SIGSTOP the leader for 2 x TTL while it scales and SIGCONT it:
its attempts to act on waking are what fencing refuses. Reported: failover min/median/max, the
lease TTL next to it, actions refused by fencing, and double actions: an action admitted under
a token after a newer leader had already been elected (from the daemons' logs), or more members
than the size in libvirt (must both be 0).

    .venv/bin/python bench/failover.py [--kills 20] [--stops 5] [--ttl 5]
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.coordination import daemons, rig


@dataclass
class Results:
    """What the rounds measured."""

    failovers: list[float] = field(default_factory=list)
    oversized: int = 0
    """Rounds that ended with more members than the size (a second clone for one decision)."""
    orphans: int = 0
    stops: int = 0


def _at(record: dict[str, Any]) -> float:
    stamp = str(record["timestamp"]).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


def double_actions(cluster: daemons.Cluster) -> int:
    """Actions admitted under a token older than a leadership already acquired by then."""
    elected = sorted(
        (_at(e), int(e["token"])) for d in cluster.daemons.values() for e in d.events("leadership_acquired")
    )
    doubles = 0
    for daemon in cluster.daemons.values():
        for action in daemon.events("action_admitted"):
            at, token = _at(action), int(action["token"])
            newest = max((t for when, t in elected if when < at), default=0)
            doubles += newest > token
    return doubles


def fenced(cluster: daemons.Cluster) -> int:
    return sum(len(d.events("action_fenced")) for d in cluster.daemons.values())


def one_round(cluster: daemons.Cluster, size: int, results: Results) -> None:
    leader = cluster.wait_leader(30)
    cluster.set_size(size, step=0.5)
    time.sleep(random.uniform(0.0, 1.5))
    killed = cluster.daemons[leader]
    killed.signal(signal.SIGKILL)
    started = time.monotonic()
    standby = [n for n in cluster.daemons if n != leader]
    cluster.wait_leader(30, among=standby)
    results.failovers.append(time.monotonic() - started)
    assert killed.process is not None
    killed.process.wait(timeout=10)
    cluster.start(leader)
    cluster.wait_started(killed)
    try:
        daemons.settle(cluster, size, 60)
    except AssertionError:
        results.oversized += len(cluster.members()) > size
        results.orphans += bool(daemons.orphans(cluster))


def stop_round(cluster: daemons.Cluster, size: int, results: Results) -> None:
    """SIGSTOP the leader for 2 x TTL in the middle of a size change, then SIGCONT it."""
    leader = cluster.wait_leader(30)
    stalled = cluster.daemons[leader]
    cluster.set_size(size, step=0.5)
    time.sleep(random.uniform(0.5, 1.0))
    stalled.signal(signal.SIGSTOP)
    cluster.wait_leader(30, among=[n for n in cluster.daemons if n != leader])
    time.sleep(2 * cluster.ttl)
    stalled.signal(signal.SIGCONT)
    try:
        daemons.settle(cluster, size, 60)
    except AssertionError:
        results.oversized += len(cluster.members()) > size
        results.orphans += bool(daemons.orphans(cluster))


def report(results: Results, ttl: int, refused: int, doubles: int) -> Table:
    times = results.failovers
    title = f"Leader SIGKILL failover, {len(times)} kills, {results.stops} SIGSTOP rounds, lease TTL {ttl} s"
    table = Table(title=title)
    for column in ("metric", "value"):
        table.add_column(column)
    table.add_row("failover min (s)", f"{min(times):.2f}")
    table.add_row("failover median (s)", f"{statistics.median(times):.2f}")
    table.add_row("failover max (s)", f"{max(times):.2f}")
    table.add_row("failover max / TTL", f"{max(times) / ttl:.2f}")
    table.add_row("actions refused by fencing", str(refused))
    table.add_row("double actions (logs: stale token after a newer election)", str(doubles))
    table.add_row("rounds ending with more members than the size", str(results.oversized))
    table.add_row("rounds ending with an orphan overlay", str(results.orphans))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--ttl", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up the rig on SIGTERM too
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-bf-"))
    workdir.chmod(0o755)
    (workdir / "etcd").mkdir()
    results = Results()
    try:
        with (
            rig.etcd_cluster(workdir / "etcd") as etcd,
            rig.hosts(workdir / "hosts") as hosts,
            daemons.cluster(workdir, etcd, hosts, f"/bench-{uuid.uuid4().hex[:6]}") as cluster,
        ):
            cluster.ttl = args.ttl
            cluster.set_size(1)
            for name in ("A", "B"):
                cluster.start(name)
            for daemon in cluster.daemons.values():
                cluster.wait_started(daemon)
            for index in range(args.kills):
                one_round(cluster, 2 + index % 2, results)
                print(f"kill {index + 1}: failover {results.failovers[-1]:.2f}s", flush=True)
            for index in range(args.stops):
                stop_round(cluster, 2 + index % 2, results)
                results.stops += 1
                print(f"stop {index + 1}: fenced so far {fenced(cluster)}", flush=True)
            refused, doubles = fenced(cluster), double_actions(cluster)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    Console(width=100).print(report(results, args.ttl, refused, doubles))


if __name__ == "__main__":
    main()
