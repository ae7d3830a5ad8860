"""How the daemon itself scales: one evaluation cycle over many groups, and loop lag while clones run.

Part 1 runs the real engine (handlers, limiter, journal, state files, metrics) for 10, 100 and 1,000
groups of two checks each, over fake metrics and the in-memory fake target (the seams tests use),
and reports the cycle time, the time per group and the resident memory, side by side.

Part 2 clones 20 instances at once through the real KVM target and measures how late a 10 ms
timer fires on the event loop meanwhile: on libvirt's test driver, and on the system QEMU when the
demo's host preparation can reach it (it starts libvirtd as root if none runs, and undoes that).

    .venv/bin/python bench/daemon.py [--groups 10,100,1000] [--cycles 5] [--no-libvirt]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.demo import config as demo_config
from autoscaler.demo import host as demo_host
from autoscaler.engine import handler, journal, limiter, memory
from autoscaler.policy import files, spec
from autoscaler.runtime import clock
from autoscaler.telemetry import metrics
from tests import fakes

CLONES = 20


def rss_mib() -> float:
    """Resident memory of this process now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def group_policy(index: int) -> spec.GroupPolicy:
    """A group with two checks on distinct queries, sized 2..20."""
    check = {"source": "fake", "strategy": {"kind": "per_instance", "per_instance": 10}}
    return spec.GroupPolicy.model_validate(
        {
            "group": f"g{index:04d}",
            "golden": "golden.qcow2",
            "template": "template",
            "min": 2,
            "max": 20,
            "checks": [
                {**check, "name": "sessions", "query": f"sessions{{group='g{index}'}}"},
                {**check, "name": "requests", "query": f"requests{{group='g{index}'}}"},
            ],
        }
    )


@dataclass
class CycleResult:
    """Figures of one group count."""

    groups: int
    cycle_ms: float
    per_group_us: float
    rss_mib: float
    rss_delta_mib: float


async def measure_cycles(groups: int, cycles: int, state: Path) -> CycleResult:
    """Median time of one tick of every group (all concurrently), and the memory it all takes."""
    gc.collect()
    before = rss_mib()
    system = clock.SystemClock()
    target = fakes.FakeTarget(system, boot_time=0.0)  # type: ignore[arg-type]
    source = fakes.FakeMetricSource()
    deps = handler.Deps(
        target=target,
        sources={"fake": source},
        clock=system,
        limiter=limiter.Limiter(4, 30.0),
        store=memory.MemoryStore(state / str(groups)),
        journal=journal.Journal(100),
        metrics=metrics.Metrics(CollectorRegistry()),
    )
    handlers = []
    for index in range(groups):
        policy = group_policy(index)
        target.add(policy.group, 4)
        for check in policy.checks:
            source.values[check.query] = 40.0
        handlers.append(
            handler.GroupHandler(files.LoadedGroup(policy, "bench", 1, files.revision(policy)), deps)
        )
    timings = []
    for _ in range(cycles):
        started = time.perf_counter()
        await asyncio.gather(*(h.tick() for h in handlers))
        timings.append(time.perf_counter() - started)
    cycle = statistics.median(timings[1:] if len(timings) > 1 else timings)
    after = rss_mib()
    return CycleResult(groups, cycle * 1000, cycle / groups * 1e6, after, after - before)


@dataclass
class LagResult:
    """Loop lag while clones (then their removal) run on one kind of host."""

    host: str
    clone_s: float
    remove_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float


async def _probe(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        samples.append(time.perf_counter() - before - 0.01)


async def measure_lag(workdir: Path, uri: str | None) -> LagResult | None:
    """Clone CLONES instances at once through KvmTarget while probing the loop; None if no host."""
    from autoscaler.targets import kvm, lifecycle

    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    try:
        prepared = await demo_host.prepare(workdir, uri)
    except (RuntimeError, OSError):
        return None
    if uri is None and prepared.uri.startswith("test:"):
        Console(stderr=True).print(f"skipping the system QEMU: {prepared.kind}")
        await prepared.release()
        return None
    try:
        text = demo_config.policy_yaml(prepared.golden, prepared.template, prepared.pool)
        policy = files.load_text(text, "bench")[0][0].policy.model_copy(update={"max": CLONES + 5})
        settings = kvm.KvmSettings(
            memory_reserve=256 * 1024 * 1024, stop=lifecycle.StopTimings(shutdown_timeout=1.0)
        )
        target = kvm.KvmTarget(prepared.uri, settings=settings, policies=[policy])
        return await _clone_and_remove(target, policy, prepared.kind)
    finally:
        await prepared.release()


async def _clone_and_remove(target: object, policy: spec.GroupPolicy, kind: str) -> LagResult:
    from autoscaler.targets import kvm

    assert isinstance(target, kvm.KvmTarget)
    await target.start()
    samples: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(samples, stop))
    try:
        started = time.perf_counter()
        created = await target.scale_out(policy, CLONES)
        cloned = time.perf_counter() - started
        started = time.perf_counter()
        await target.scale_in(policy, created.done)
        removed = time.perf_counter() - started
    finally:
        stop.set()
        await probe
        await target.close()
    return LagResult(kind, cloned, removed, _ms(samples, 0.5), _ms(samples, 0.99), _ms(samples, 1.0))


def _ms(samples: list[float], quantile: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000


def cycle_table(results: list[CycleResult]) -> Table:
    """Part 1 side by side, with ratios to the smallest run."""
    table = Table(title="evaluation cycle (all groups tick once, concurrently; fake metrics and target)")
    for column in ("groups", "cycle", "per group", "x per-group vs first", "RSS", "RSS growth"):
        table.add_column(column, justify="right")
    base = results[0].per_group_us
    for r in results:
        table.add_row(
            f"{r.groups:,}",
            f"{r.cycle_ms:,.1f} ms",
            f"{r.per_group_us:,.0f} us",
            f"{r.per_group_us / base:.2f}",
            f"{r.rss_mib:,.0f} MiB",
            f"{r.rss_delta_mib:+,.1f} MiB",
        )
    return table


def lag_table(results: list[LagResult]) -> Table:
    """Part 2 side by side."""
    table = Table(title=f"event-loop lag of a 10 ms timer while {CLONES} clones run (KvmTarget)")
    for column in ("host", "clone 20", "remove 20", "lag p50", "lag p99", "lag max"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r.host,
            f"{r.clone_s:.2f} s",
            f"{r.remove_s:.2f} s",
            f"{r.lag_p50_ms:.1f} ms",
            f"{r.lag_p99_ms:.1f} ms",
            f"{r.lag_max_ms:.1f} ms",
        )
    return table


async def main(args: argparse.Namespace) -> None:
    """Run both parts and print their tables."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as temp:
        work = Path(temp)
        os.chmod(temp, 0o755)  # QEMU (libvirt-qemu) must reach the system host's images below it
        cycles = [await measure_cycles(n, args.cycles, work) for n in args.groups]
        console.print(cycle_table(cycles))
        if args.no_libvirt:
            return
        lags = [
            r for uri in ("test", None) if (r := await measure_lag(work / (uri or "system"), uri)) is not None
        ]
        console.print(lag_table(lags))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100, 1000])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--no-libvirt", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
