"""How fast a standby takes over when the leader is SIGKILLed, and whether anything acts twice.

Runs the same rounds twice, side by side: standbys that watch the leader key (the default) and
standbys that poll it every campaign_interval (`watch: false`, as before the watch), each
on a fresh rig. For each it also measures what an idle standby costs etcd (requests per second,
counted by the standby's own client, over a quiet window before the first kill) and the hand-over
on a clean stop (SIGTERM: the leader revokes its lease).

Each rig starts a 3-member etcd cluster on loopback, two private libvirtds standing for two hosts, and two
real daemons (the same rig as tests/coordination). Each round changes the group's size (so the
leader is busy cloning or destroying), waits a random 0-1.5 s (the kill lands anywhere in the
keepalive cycle), SIGKILLs the leader, and times until the standby's /status says it leads. The
killed daemon is then restarted as the new standby and the group must settle at its size with no
orphan overlay. Then a few rounds SIGSTOP the leader for 2 x TTL while it scales and SIGCONT it:
its attempts to act on waking are what fencing refuses. Reported: failover min/median/max, the
lease TTL next to it, actions refused by fencing, and double actions: an action admitted under
a token after a newer leader had already been elected (from the daemons' logs), or more members
than the size in libvirt (must both be 0).

    .venv/bin/python bench/failover.py [--kills 20] [--stops 5] [--terms 5] [--idle 20] [--ttl 5]
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
    handovers: list[float] = field(default_factory=list)
    """SIGTERM of the leader until the standby leads."""
    idle: dict[str, float] = field(default_factory=dict)
    """An idle standby's etcd requests per second, by request path."""
    refused: int = 0
    doubles: int = 0
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


def term_round(cluster: daemons.Cluster, results: Results) -> None:
    """SIGTERM the leader (it resigns: revokes its lease) and time until the standby leads."""
    leader = cluster.wait_leader(30)
    stopped = cluster.daemons[leader]
    stopped.signal(signal.SIGTERM)
    started = time.monotonic()
    cluster.wait_leader(30, among=[n for n in cluster.daemons if n != leader])
    results.handovers.append(time.monotonic() - started)
    assert stopped.process is not None
    stopped.process.wait(timeout=30)
    cluster.start(leader)
    cluster.wait_started(stopped)


def idle_rates(cluster: daemons.Cluster, seconds: float) -> dict[str, float]:
    """The standby's etcd requests per second over a quiet window, by path and in total."""
    leader = cluster.wait_leader(30)
    standby = next(d for n, d in cluster.daemons.items() if n != leader)

    def counts() -> dict[str, int]:
        status = standby.status()
        assert status is not None
        assert status["coordination"] is not None
        return dict(status["coordination"]["etcd_requests"])

    before, started = counts(), time.monotonic()
    time.sleep(seconds)
    after, took = counts(), time.monotonic() - started
    rates = {path: (after[path] - before.get(path, 0)) / took for path in after}
    rates["total"] = sum(rates.values())
    return rates


def run_mode(args: argparse.Namespace, watch: bool) -> Results:
    """One fresh rig, two daemons, every round; standbys watching or polling the leader key."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-bf-"))
    workdir.chmod(0o755)
    (workdir / "etcd").mkdir()
    results = Results()
    mode = "watch" if watch else "poll"
    try:
        with (
            rig.etcd_cluster(workdir / "etcd") as etcd,
            rig.hosts(workdir / "hosts") as hosts,
            daemons.cluster(workdir, etcd, hosts, f"/bench-{uuid.uuid4().hex[:6]}") as cluster,
        ):
            cluster.ttl = args.ttl
            cluster.coordination = f"  watch: {str(watch).lower()}\n"
            cluster.set_size(1)
            for name in ("A", "B"):
                cluster.start(name)
            for daemon in cluster.daemons.values():
                cluster.wait_started(daemon)
            daemons.settle(cluster, 1, 60)
            results.idle = idle_rates(cluster, args.idle)
            print(f"{mode}: idle standby {results.idle['total']:.2f} etcd requests/s", flush=True)
            for index in range(args.terms):
                term_round(cluster, results)
                print(f"{mode} term {index + 1}: hand-over {results.handovers[-1]:.3f}s", flush=True)
            for index in range(args.kills):
                one_round(cluster, 2 + index % 2, results)
                print(f"{mode} kill {index + 1}: failover {results.failovers[-1]:.2f}s", flush=True)
            for index in range(args.stops):
                stop_round(cluster, 2 + index % 2, results)
                results.stops += 1
                print(f"{mode} stop {index + 1}: fenced so far {fenced(cluster)}", flush=True)
            results.refused, results.doubles = fenced(cluster), double_actions(cluster)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def report(poll: Results, watch: Results, args: argparse.Namespace) -> Table:
    title = (
        f"Leader failover, standby polling vs watching the leader key: {len(watch.failovers)} SIGKILLs, "
        f"{len(watch.handovers)} SIGTERMs, {watch.stops} SIGSTOPs each, lease TTL {args.ttl} s"
    )
    table = Table(title=title)
    for column in ("metric", "poll (before)", "watch (after)", "watch / poll"):
        table.add_column(column, justify="right" if column != "metric" else "left")

    def row(name: str, before: float, after: float, digits: int = 2) -> None:
        ratio = f"{after / before:.2f}" if before else "-"
        table.add_row(name, f"{before:.{digits}f}", f"{after:.{digits}f}", ratio)

    row("idle standby etcd requests/s (total)", poll.idle["total"], watch.idle["total"])
    for path in sorted((set(poll.idle) | set(watch.idle)) - {"total"}):
        row(f"  {path}", poll.idle.get(path, 0.0), watch.idle.get(path, 0.0))
    row(
        "SIGTERM hand-over median (s)",
        statistics.median(poll.handovers),
        statistics.median(watch.handovers),
        3,
    )
    row("SIGTERM hand-over max (s)", max(poll.handovers), max(watch.handovers), 3)
    row("SIGKILL failover min (s)", min(poll.failovers), min(watch.failovers))
    row("SIGKILL failover median (s)", statistics.median(poll.failovers), statistics.median(watch.failovers))
    row("SIGKILL failover max (s)", max(poll.failovers), max(watch.failovers))
    row("SIGKILL failover max / TTL", max(poll.failovers) / args.ttl, max(watch.failovers) / args.ttl)
    row("actions refused by fencing", poll.refused, watch.refused, 0)
    row("double actions (stale token after a newer election)", poll.doubles, watch.doubles, 0)
    row("rounds ending with more members than the size", poll.oversized, watch.oversized, 0)
    row("rounds ending with an orphan overlay", poll.orphans, watch.orphans, 0)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--terms", type=int, default=5, help="SIGTERM hand-overs")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds the idle standby is watched")
    parser.add_argument("--ttl", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up the rig on SIGTERM too
    poll = run_mode(args, watch=False)
    watch = run_mode(args, watch=True)
    Console(width=120).print(report(poll, watch, args))


if __name__ == "__main__":
    main()
