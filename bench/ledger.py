"""What a volume-ledger call costs in etcd (3 members on loopback) next to the file ledger, per call.

Each clone writes one intent before its overlay (and one per seed), each deletion reads and drops
it, and each orphan sweep lists a host's intents: this prints the median and p99 of each call for
both ledgers and their ratio, so the price of sharing the ledger through etcd is seen in one run.

    .venv/bin/python bench/ledger.py [--volumes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from autoscaler.coordination import etcd
from autoscaler.coordination.ledger import EtcdLedger
from autoscaler.targets import ownership
from tests.coordination import rig

HOST = "qemu+ssh://root@kvm1.example.net/system"
CALLS = ("intend", "owns", "entries", "forget")


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


async def measure(ledger: ownership.Ledger, volumes: int) -> dict[str, list[float]]:
    """Milliseconds per call: `volumes` intents, owns and forgets, and one listing per 10 volumes."""
    names = [f"as-web-{uuid.uuid4()}.qcow2" for _ in range(volumes)]
    found: dict[str, list[float]] = {call: [] for call in CALLS}
    for name in names:
        found["intend"].append(
            await timed(functools.partial(ledger.intend, HOST, "pool", name, "overlay", name))
        )
    for index, name in enumerate(names):
        found["owns"].append(await timed(functools.partial(ledger.owns, HOST, "pool", name)))
        if index % 10 == 0:
            found["entries"].append(await timed(functools.partial(ledger.entries, HOST)))
    for name in names:
        found["forget"].append(await timed(functools.partial(ledger.forget, HOST, "pool", name)))
    return found


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


async def run(volumes: int, workdir: pathlib.Path) -> Table:
    files = await measure(ownership.FileLedger(workdir / "volumes"), volumes)
    (workdir / "etcd").mkdir()
    with rig.etcd_cluster(workdir / "etcd") as cluster:
        client = etcd.Client(cluster.endpoints, timeout=2.0)
        try:
            shared = await measure(EtcdLedger(client, f"/bench-{uuid.uuid4().hex[:6]}"), volumes)
        finally:
            await client.close()
    table = Table(title=f"volume ledger, {volumes} volumes on one host: milliseconds per call")
    for column in ("call", "file p50", "file p99", "etcd p50", "etcd p99", "etcd/file p50"):
        table.add_column(column, justify="right")
    for call in CALLS:
        file_p50, etcd_p50 = statistics.median(files[call]), statistics.median(shared[call])
        table.add_row(
            call,
            f"{file_p50:.3f}",
            f"{p99(files[call]):.3f}",
            f"{etcd_p50:.3f}",
            f"{p99(shared[call]):.3f}",
            f"{etcd_p50 / max(file_p50, 1e-6):.1f}x",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="as-ledger-bench-") as workdir:
        Console().print(asyncio.run(run(args.volumes, pathlib.Path(workdir))))


if __name__ == "__main__":
    main()
