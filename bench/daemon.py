"""How the daemon itself scales: one evaluation cycle over many groups, and loop lag while clones run.

Part 1 runs the real engine (handlers, limiter, journal, state files, metrics) for 10, 100 and 1,000
groups of two checks each, over fake metrics and the in-memory fake target (the seams tests use),
and reports the cycle time, the time per group and the resident memory, side by side.

Part 2 clones 20 instances at once through the real KVM target and measures how late a 10 ms
timer fires on the event loop meanwhile: on libvirt's test driver, and on the system QEMU when the
demo's host preparation can reach it (it starts libvirtd as root if none runs, and undoes that).

Part 3 starts the real daemon (fake target and metrics) on one policy file of 1,000 and 10,000
groups, each in a fresh process: the time to READY, the loop lag while the file loads, the
resident memory once loaded, the time until every group finished its first evaluation and the loop
lag meanwhile, then the resident memory after the file is removed and reloaded (groups gone). Each
size runs with the first evaluations paced (engine.first_evaluations_per_second, 500) and, side by
side, all at once (pace 10^9: every group's first evaluation in the same instant).

Part 4 evaluates 1,000 new groups once on an empty state directory, then again as a restarted
daemon would (new handlers and store, same directory): CPU per first evaluation and state files
written, side by side.

    .venv/bin/python bench/daemon.py [--groups 10,100,1000] [--cycles 5] [--no-libvirt]
                                     [--load 1000,10000] [--only-load] [--pace 500] [--first 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from bench.fleet import group_policy, rss_mib
from tests import fakes

CLONES = 20


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


@dataclass
class FirstResult:
    """Figures of one round of first evaluations."""

    start: str
    groups: int
    wall_s: float
    cpu_ms_per_group: float
    written: int


async def measure_first(groups: int, state: Path) -> list[FirstResult]:
    """First evaluations of `groups` on an empty state directory, then again after a restart."""
    from autoscaler import atomic

    written = 0
    write_text = atomic.write_text

    def counted(*args: Any, **kwargs: Any) -> None:
        nonlocal written
        written += 1
        write_text(*args, **kwargs)

    atomic.write_text = counted
    text = "groups:\n" + "".join(LOAD_GROUP.format(index=i) for i in range(groups))
    loaded = list(files.load_text(text, "bench")[0])
    results = []
    try:
        for start in ("fresh state", "restart"):
            written = 0
            system = clock.SystemClock()
            target = fakes.FakeTarget(system, boot_time=0.0)  # type: ignore[arg-type]
            deps = handler.Deps(
                target=target,
                sources={"fake": fakes.FakeMetricSource(values={"load": 5.0})},
                clock=system,
                limiter=limiter.Limiter(4, 30.0),
                store=memory.MemoryStore(state / "first"),
                journal=journal.Journal(100),
                metrics=metrics.Metrics(CollectorRegistry()),
            )
            handlers = [handler.GroupHandler(g, deps) for g in loaded]
            for each in handlers:
                target.add(each.group, 1)  # at its size: no action, only the evaluation
            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(h.tick() for h in handlers))
            cpu_ms = (time.process_time() - cpu) * 1000 / groups
            results.append(FirstResult(start, groups, time.perf_counter() - started, cpu_ms, written))
    finally:
        atomic.write_text = write_text
    return results


def first_table(results: list[FirstResult]) -> Table:
    """Part 4 side by side."""
    table = Table(
        title="first evaluations: new groups, then the same after a restart (fake target and metrics)"
    )
    for column in ("start", "groups", "wall", "CPU per group", "x CPU", "state files written"):
        table.add_column(column, justify="right")
    base = results[0].cpu_ms_per_group
    for r in results:
        table.add_row(
            r.start,
            f"{r.groups:,}",
            f"{r.wall_s:.2f} s",
            f"{r.cpu_ms_per_group:.2f} ms",
            f"{r.cpu_ms_per_group / base:.2f}",
            f"{r.written:,}",
        )
    return table


def _ms(samples: list[float], quantile: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000


LOAD_GROUP = """\
  - group: g{index:05d}
    golden: golden.qcow2
    template: template
    min: 0
    max: 10
    evaluation_interval: 1h
    checks:
      - {{name: load, source: fake, query: load, strategy: {{kind: per_instance, per_instance: 10}}}}
"""


ALL_AT_ONCE = 1e9
"""A pace of first evaluations so high that every group's first comes in the same instant."""


@dataclass
class LoadResult:
    """Figures of loading one file of many groups into a fresh daemon process."""

    groups: int
    pace: float
    file_mib: float
    ready_s: float
    first_ticks_s: float
    first_lag_max_ms: float
    first_lag_p99_ms: float
    lag_max_ms: float
    lag_p99_ms: float
    rss_loaded_mib: float
    unload_s: float
    unload_lag_max_ms: float
    rss_unloaded_mib: float
    rss_start_mib: float


async def measure_load(groups: int, pace: float, work: Path) -> LoadResult:
    """One child process per size and pace, so each RSS figure is that daemon's alone."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--load-child",
        str(groups),
        str(pace),
        str(work / f"{groups}-{pace:g}"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    return LoadResult(**json.loads(out.decode().strip().splitlines()[-1]))


async def _load_child(groups: int, pace: float, work: Path) -> dict[str, float]:
    """Inside the child: start the daemon on the file, probe the loop, remove the file, reload."""
    from autoscaler import settings
    from autoscaler.runtime import daemon

    policies = work / f"policies-{groups}"
    policies.mkdir(parents=True)
    path = policies / "many.yaml"
    path.write_text("groups:\n" + "".join(LOAD_GROUP.format(index=i) for i in range(groups)))
    limits = settings.LimitSettings(groups=groups, policy_file_bytes=64 * 1024 * 1024)
    config = settings.Settings(
        policies=(str(policies),),
        state_dir=str(work / f"state-{groups}"),
        http=settings.HttpSettings(port=0),
        limits=limits,
        engine=settings.EngineSettings(first_evaluations_per_second=pace),
    )
    gc.collect()
    start_rss = rss_mib()
    target = fakes.FakeTarget(clock.SystemClock(), boot_time=0.0)  # type: ignore[arg-type]
    source = fakes.FakeMetricSource(values={"load": 5.0})
    runner = daemon.Daemon(
        config,
        target=target,
        metric_sources={"fake": source},
        registry=CollectorRegistry(),
    )
    applied = _count_applies(runner)
    samples: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(samples, stop))
    started = time.perf_counter()
    task = asyncio.create_task(runner.run())
    await runner.started.wait()
    ready = time.perf_counter() - started
    await applied.get()  # the first load's hand-over
    loaded_lag = list(samples)
    loaded_rss = rss_mib()
    samples.clear()
    started = time.perf_counter()
    evaluated = runner.metrics.evaluations._metrics  # one series per group once its first tick ended
    while len(evaluated) < groups:  # noqa: ASYNC110 (the daemon offers no event for this)
        await asyncio.sleep(0.05)
    first_ticks = time.perf_counter() - started
    first_lag = list(samples)
    await asyncio.sleep(1.0)  # the last state files are written; their stall is not the removal's
    # Each group scaled out to one instance: on a real host those are libvirt domains, outside the
    # daemon's memory, and they outlive the policy. The fake target's record of them is dropped, so
    # the figure after the removal is the daemon's own; so is the fake source's record of every
    # query (a Prometheus server keeps that, not the daemon): its 10,000 small tuples, made during
    # the first evaluations and scattered over the allocator's arenas, kept 250 MiB of them mapped.
    target.members.clear()
    target.calls.clear()
    source.calls.clear()
    samples.clear()
    path.unlink()
    started = time.perf_counter()
    runner.request_reload()
    await applied.get()  # the groups dropped, their series swept, their memory given back
    unload = time.perf_counter() - started
    await asyncio.sleep(0.5)
    unload_lag = list(samples)
    unloaded_rss = rss_mib()
    stop.set()
    await probe
    runner.request_stop()
    await task
    return {
        "groups": groups,
        "pace": pace,
        "file_mib": len(LOAD_GROUP) * groups / 2**20,
        "ready_s": ready,
        "first_ticks_s": first_ticks,
        "first_lag_max_ms": _ms(first_lag, 1.0),
        "first_lag_p99_ms": _ms(first_lag, 0.99),
        "lag_max_ms": _ms(loaded_lag, 1.0),
        "lag_p99_ms": _ms(loaded_lag, 0.99),
        "rss_loaded_mib": loaded_rss,
        "unload_s": unload,
        "unload_lag_max_ms": _ms(unload_lag, 1.0),
        "rss_unloaded_mib": unloaded_rss,
        "rss_start_mib": start_rss,
    }


def _count_applies(runner: Any) -> asyncio.Queue[None]:
    """A queue that gets one item each time the daemon finished handing a policy load over."""
    applies: asyncio.Queue[None] = asyncio.Queue()
    apply = runner._apply

    async def counted(groups: dict[str, Any]) -> None:
        await apply(groups)
        applies.put_nowait(None)

    runner._apply = counted
    return applies


def load_table(results: list[LoadResult]) -> Table:
    """Part 3 side by side, with the ratio of load time per group to the first size."""
    table = Table(title="daemon start on one policy file of many groups (fake target and metrics)")
    columns = ("groups", "first evaluations", "file", "to READY", "x per group", "lag max", "lag p99")
    more = ("RSS start", "RSS loaded", "all evaluated once", "lag max / p99 (first evaluations)")
    for column in (*columns, *more, "remove all", "lag max (remove)", "RSS after remove"):
        table.add_column(column, justify="right")
    base = results[0].ready_s / results[0].groups
    for r in results:
        table.add_row(
            f"{r.groups:,}",
            "all at once" if r.pace >= ALL_AT_ONCE else f"{r.pace:g} per s",
            f"{r.file_mib:.1f} MiB",
            f"{r.ready_s:.2f} s",
            f"{r.ready_s / r.groups / base:.2f}",
            f"{r.lag_max_ms:.0f} ms",
            f"{r.lag_p99_ms:.0f} ms",
            f"{r.rss_start_mib:.0f} MiB",
            f"{r.rss_loaded_mib:.0f} MiB",
            f"{r.first_ticks_s:.1f} s",
            f"{r.first_lag_max_ms:.0f} / {r.first_lag_p99_ms:.0f} ms",
            f"{r.unload_s:.2f} s",
            f"{r.unload_lag_max_ms:.0f} ms",
            f"{r.rss_unloaded_mib:.0f} MiB",
        )
    return table


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
    console = Console(width=200)
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as temp:
        work = Path(temp)
        os.chmod(temp, 0o755)  # QEMU (libvirt-qemu) must reach the system host's images below it
        if args.load:
            runs = [(n, pace) for n in args.load for pace in (args.pace, ALL_AT_ONCE)]
            console.print(load_table([await measure_load(n, pace, work) for n, pace in runs]))
        if args.first:
            console.print(first_table(await measure_first(args.first, work)))
        if args.only_load:
            return
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
    parser.add_argument("--load", type=lambda s: [int(x) for x in s.split(",") if x], default=[1000, 10000])
    parser.add_argument("--only-load", action="store_true", help="run part 3 only")
    parser.add_argument("--pace", type=float, default=500.0, help="first evaluations per second")
    parser.add_argument("--first", type=int, default=1000, help="groups of part 4 (0: skip it)")
    parser.add_argument("--load-child", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse()
    if options.load_child:
        import structlog

        structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # the figures alone on stdout
        size, pace, where = options.load_child
        print(json.dumps(asyncio.run(_load_child(int(size), float(pace), Path(where)))))
    else:
        asyncio.run(main(options))
