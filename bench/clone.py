"""Linked clones (qcow2 overlays) against full copies (the virt-clone way), on a real libvirtd.

Times how long it takes until 1 and then 10 new instances are running, from a golden image of
1 GiB filled with data (not sparse), and how long 1 instance takes from a warm pool (a paused
domain resumed, a shut-off one started) against 1 linked clone. It also prices each clone's
identity: the same linked clones with a cloud-init seed (built in memory, then created and
uploaded through the storage API) against plain ones, with the seed's own phases per clone.
libvirtd and virtlogd are started when none is running, as in tests/integration; everything
created is removed at the end. `python bench/clone.py seeds` measures only the identity part.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table

from autoscaler.identity import seed
from autoscaler.policy import spec
from autoscaler.targets import NullObserver, kvm, lifecycle, seeds
from autoscaler.virt import gateway, ops, xml

URI = os.environ.get("AUTOSCALER_BENCH_URI", "qemu:///system")
"""The libvirtd to measure on; any local libvirtd socket works, e.g. a private one of the test rig."""
GiB = 1024**3
MiB = 1024**2
COUNTS = (1, 10)


def answers() -> bool:
    """True when a libvirtd answers on the system URI."""
    return subprocess.run(["virsh", "-c", URI, "version"], capture_output=True, check=False).returncode == 0


def start_daemons(workdir: pathlib.Path) -> list[subprocess.Popen[bytes]]:
    """virtlogd and libvirtd as children."""
    env = dict(os.environ, LIBVIRT_LOG_OUTPUTS=f"3:file:{workdir}/libvirtd.log")
    with (workdir / "daemons.out").open("ab") as out:
        started = [subprocess.Popen(["virtlogd"], stdout=out, stderr=out)]
        started.append(subprocess.Popen(["libvirtd"], stdout=out, stderr=out, env=env))
    deadline = time.monotonic() + 30
    while not answers():
        if time.monotonic() > deadline:
            raise RuntimeError("libvirtd did not start")
        time.sleep(0.1)
    return started


@contextlib.contextmanager
def kvm_permissions() -> Iterator[None]:
    """Give /dev/kvm the group and mode QEMU needs (also under a libvirtd already running), then restore."""
    if not os.path.exists("/dev/kvm"):
        yield
        return
    stat = os.stat("/dev/kvm")
    shutil.chown("/dev/kvm", group="kvm")
    os.chmod("/dev/kvm", 0o660)
    try:
        yield
    finally:
        os.chown("/dev/kvm", stat.st_uid, stat.st_gid)
        os.chmod("/dev/kvm", stat.st_mode & 0o7777)


def make_golden(images: pathlib.Path) -> pathlib.Path:
    """A 1 GiB qcow2 whose every cluster holds data."""
    raw = images / "golden.raw"
    chunk = os.urandom(4 * MiB)
    with raw.open("wb") as handle:
        for _ in range(GiB // len(chunk)):
            handle.write(chunk)
    golden = images / "golden.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(golden)], check=True)
    raw.unlink()
    golden.chmod(0o644)
    return golden


def template(golden: pathlib.Path) -> str:
    """A small domain: SeaBIOS idles on the disk; the measure ends when QEMU runs."""
    kind = os.environ.get("AUTOSCALER_TEST_DOMAIN_TYPE") or ("kvm" if os.path.exists("/dev/kvm") else "qemu")
    return (
        f"<domain type='{kind}'><name>bench-template</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{golden}'/>"
        "<target dev='vda' bus='virtio'/></disk><memballoon model='none'/></devices></domain>"
    )


async def linked(target: kvm.KvmTarget, policy: spec.GroupPolicy, count: int) -> float:
    """Seconds until `count` linked clones run (overlay, define, start)."""
    started = time.monotonic()
    result = await target.scale_out(policy, count)
    elapsed = time.monotonic() - started
    if result.failed:
        raise RuntimeError(f"linked clones failed: {result.errors}")
    await target.scale_in(policy, list(result.done))
    return elapsed


async def full_copy(gw: gateway.Gateway, pool: str, golden: str, text: str, count: int) -> float:
    """Seconds until `count` full copies run (copy the whole volume, define, start)."""
    started = time.monotonic()
    uuids = await asyncio.gather(*(one_full_copy(gw, pool, golden, text) for _ in range(count)))
    elapsed = time.monotonic() - started
    for uuid in uuids:
        await remove_full_copy(gw, uuid)
    return elapsed


async def one_full_copy(gw: gateway.Gateway, pool: str, golden: str, text: str) -> str:
    """One virt-clone style instance."""
    uuid = str(uuidlib.uuid4())
    path = await gw.run(ops.copy_volume, pool, f"bench-full-{uuid}.qcow2", golden, op="vol_copy")
    root = xml.parse(text)
    root.find("name").text = f"bench-full-{uuid[:8]}"  # type: ignore[union-attr]
    root.find("devices/disk/source").set("file", path)  # type: ignore[union-attr]
    await gw.run(ops.define, xml.serialize(root), op="define")
    await gw.run(
        ops.start, (await gw.run(ops.find_by_name, f"bench-full-{uuid[:8]}", op="lookup")).uuid, op="start"
    )
    return f"{uuid[:8]}|{path}"


async def remove_full_copy(gw: gateway.Gateway, handle: str) -> None:
    """Destroy, undefine and delete one full copy."""
    short, path = handle.split("|", 1)
    view = await gw.run(ops.find_by_name, f"bench-full-{short}", op="lookup")
    await gw.run(ops.destroy, view.uuid, op="destroy")
    await gw.run(ops.undefine, view.uuid, op="undefine")
    await gw.run(ops.delete_volume_by_path, path, op="vol_delete")


def bench_policy(
    golden: pathlib.Path, template_path: pathlib.Path, pool: str, **extra: object
) -> spec.GroupPolicy:
    """The benchmark group, optionally with a warm pool."""
    fields: dict[str, object] = {
        "group": "bench",
        "golden": str(golden),
        "template": str(template_path),
        "pool": pool,
        "min": 0,
        "max": 20,
        "warmup": 0.0,
    }
    return spec.GroupPolicy.model_validate(fields | extra)


USER_DATA = """#cloud-config
fqdn: ${hostname}.example.org
write_files:
  - path: /etc/instance.conf
    content: "${group} ${instance_id} on ${host}"
runcmd:
  - [systemctl, enable, --now, prometheus-node-exporter]
"""


class Phases(NullObserver):
    """Collects how long each provisioning phase took, per phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def provisioned(self, group: str, phase: str, seconds: float) -> None:
        """Record one phase."""
        self.seconds.setdefault(phase, []).append(seconds)


def seed_build_seconds(runs: int = 200) -> float:
    """Mean seconds to render one clone's documents and pack the ISO in memory."""
    instance = spec.Instance(user_data_text=USER_DATA, ssh_authorized_keys=("ssh-ed25519 AAAA bench",))
    started = time.perf_counter()
    for _ in range(runs):
        new = str(uuidlib.uuid4())
        planned = seeds.plan(instance, f"as-bench-{new[:8]}", new, "bench", URI)
        seed.iso(planned.documents.files())
    return (time.perf_counter() - started) / runs


async def measure_seeds(workdir: pathlib.Path, pool: str, golden: pathlib.Path) -> SeedRows:
    """Plain linked clones against linked clones with a seed, per count; the seed phases per clone."""
    template_path = workdir / "template.xml"
    template_path.write_text(template(golden))
    plain = bench_policy(golden, template_path, pool)
    with_seed = bench_policy(golden, template_path, pool, instance={"user_data_text": USER_DATA})
    phases = Phases()
    target = kvm.KvmTarget(URI, settings=SETTINGS, policies=[plain], observer=phases)
    await target.start()
    try:
        rows = []
        for count in COUNTS:
            plain_runs: list[float] = []
            seed_runs: list[float] = []
            for repeat in range(REPEATS):  # alternate which goes first: the host's load drifts
                for policy in (plain, with_seed) if repeat % 2 == 0 else (with_seed, plain):
                    runs = seed_runs if policy is with_seed else plain_runs
                    if policy is with_seed:
                        phases.seconds.clear()
                    runs.append(await linked(target, policy, count))
            rows.append(
                (count, statistics.median(plain_runs), statistics.median(seed_runs), dict(phases.seconds))
            )
    finally:
        await target.close()
    return rows, seed_build_seconds()


REPEATS = 3
"""Runs per count and kind; the tables show medians."""
SeedRows = tuple[list[tuple[int, float, float, dict[str, list[float]]]], float]


def seed_tables(rows: SeedRows) -> list[Table]:
    """Time until running with and without a seed, and what one clone's seed costs."""
    counts, build = rows
    table = Table(title=f"Time until running: linked clone vs with a cloud-init seed (median of {REPEATS})")
    for column in ("instances", "plain (s)", "with seed (s)", "seed / plain"):
        table.add_column(column, justify="right")
    for count, fast, slow, _phases in counts:
        table.add_row(str(count), f"{fast:.3f}", f"{slow:.3f}", f"{slow / fast:.2f}x")
    per_clone = Table(title="Per clone, with a seed (mean over the last run of each count, ms)")
    for column in ("phase", "ms"):
        per_clone.add_column(column, justify="right")
    per_clone.add_row("seed: render + ISO in memory (alone, 200 runs)", f"{build * 1000:.2f}")
    merged: dict[str, list[float]] = {}
    for _count, _fast, _slow, phases in counts:
        for phase, seconds in phases.items():
            merged.setdefault(phase, []).extend(seconds)
    for phase in ("overlay", "seed", "define", "start"):
        if merged.get(phase):
            label = "seed: ISO + volume create + upload" if phase == "seed" else phase
            per_clone.add_row(label, f"{statistics.mean(merged[phase]) * 1000:.1f}")
    return [table, per_clone]


async def measure(workdir: pathlib.Path, pool: str, golden: pathlib.Path) -> Rows:
    """Both methods for each count, side by side; then 1 instance from each kind of warm pool."""
    template_path = workdir / "template.xml"
    template_path.write_text(template(golden))
    policy = bench_policy(golden, template_path, pool)
    target = kvm.KvmTarget(URI, settings=SETTINGS, policies=[policy])
    await target.start()
    try:
        gw = target.gateway(URI)
        rows = []
        for count in COUNTS:
            fast = await linked(target, policy, count)
            slow = await full_copy(gw, pool, str(golden), template_path.read_text(), count)
            rows.append((count, fast, slow))
        single = min(fast for count, fast, _slow in rows if count == 1)
    finally:
        await target.close()
    pools = [(state, await from_pool(bench_policy(golden, template_path, pool), state)) for state in POOLS]
    return rows, single, pools


SETTINGS = kvm.KvmSettings(
    memory_reserve=256 * MiB, watch_interval=0.05, stop=lifecycle.StopTimings(shutdown_timeout=0.1)
)
POOLS = ("paused", "shutoff")
Rows = tuple[list[tuple[int, float, float]], float, list[tuple[str, float]]]


async def from_pool(policy: spec.GroupPolicy, state: str) -> float:
    """Seconds until 1 instance runs when the group keeps one pooled domain waiting `state`."""
    pooled = policy.model_copy(update={"warm_pool": spec.WarmPool(size=1, state=state)})
    target = kvm.KvmTarget(URI, settings=SETTINGS, policies=[pooled])
    await target.start()
    try:
        await wait_parked(target, state)
        started = time.monotonic()
        result = await target.scale_out(pooled, 1)
        elapsed = time.monotonic() - started
        if result.failed:
            raise RuntimeError(f"take from the pool failed: {result.errors}")
        await target.scale_in(pooled, list(result.done))
        target.set_policies([policy])  # no pool: the refilled domain is removed
        await target.fill_pools()
        return elapsed
    finally:
        await target.close()


async def wait_parked(target: kvm.KvmTarget, state: str, deadline: float = 60.0) -> None:
    """Wait until the group's one pooled domain waits as asked."""
    end = time.monotonic() + deadline
    while [r.run for r in target._cache.pooled("bench")] != [state]:
        if time.monotonic() > end:
            raise RuntimeError(f"the warm pool did not fill ({state}) within {deadline:g}s")
        await asyncio.sleep(0.05)


def run_bench(workdir: pathlib.Path, images: pathlib.Path, seeds_only: bool) -> tuple[Rows | None, SeedRows]:
    """Start daemons if needed, make the golden image and pool, measure, remove them again."""
    daemons = [] if answers() else start_daemons(workdir)
    pool = f"as-bench-{os.getpid()}"
    virsh = ["virsh", "-c", URI]
    try:
        golden = make_golden(images)
        subprocess.run(
            [*virsh, "pool-create-as", pool, "dir", "--target", str(images)], check=True, capture_output=True
        )
        seeded = asyncio.run(measure_seeds(workdir, pool, golden))
        return (None if seeds_only else asyncio.run(measure(workdir, pool, golden))), seeded
    finally:
        subprocess.run([*virsh, "pool-destroy", pool], check=False, capture_output=True)
        for process in reversed(daemons):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def main() -> None:
    """Set up, measure, print, clean up."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-bench-"))
    workdir.chmod(0o755)
    images = workdir / "images"
    images.mkdir()
    try:
        with kvm_permissions():
            measured, seeded = run_bench(workdir, images, seeds_only="seeds" in sys.argv[1:])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console = Console()
    for table in seed_tables(seeded):
        console.print(table)
    if measured is None:
        return
    rows, single, pools = measured
    table = Table(title="Time until running: linked clone vs full copy (1 GiB golden image, data-filled)")
    for column in ("instances", "linked clones (s)", "full copies (s)", "full / linked"):
        table.add_column(column, justify="right")
    for count, fast, slow in rows:
        table.add_row(str(count), f"{fast:.2f}", f"{slow:.2f}", f"{slow / fast:.1f}x")
    console.print(table)
    console.print(pool_table(single, pools))


def pool_table(single: float, pools: list[tuple[str, float]]) -> Table:
    """1 instance from a warm pool against 1 linked clone (time until running)."""
    table = Table(title="Time until running: 1 instance from a warm pool vs 1 linked clone")
    for column in ("how", "seconds", "linked / this"):
        table.add_column(column, justify="right")
    table.add_row("1 linked clone (overlay, define, start)", f"{single:.3f}", "1.0x")
    for state, seconds in pools:
        label = (
            "1 instance from a paused warm pool" if state == "paused" else "1 instance from a shut-off pool"
        )
        table.add_row(label, f"{seconds:.3f}", f"{single / seconds:.1f}x")
    return table


if __name__ == "__main__":
    main()
