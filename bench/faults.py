"""The full fault campaign against a real daemon process on a real libvirtd (tests/faults/campaign.py).

At least 50 kill -9 points during scale-out and scale-in (each followed by a restart that must
converge), libvirtd restarts (when this run started libvirtd itself: a shared one is never
restarted), metric-source faults, bad policy files and hostile HTTP requests, all next to foreign
look-alike volumes and domains. Prints one table: points survived, orphans, foreign objects
touched, scale-ins on missing data, tracebacks (those four must be 0), the longest convergence
and the daemon's peak RSS.

    .venv/bin/python bench/faults.py [--points 50] [--seed 1] [--quiet]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.demo import host as demo_host
from tests.faults import campaign
from tests.integration import libvirt_env

SOURCE_FAULTS = ["error", "garbage", "huge", "hang"]
BAD = [("nul", False), ("deep", True), ("latin1", False), ("bomb", True)]


def table(tally: campaign.Tally) -> Table:
    """The campaign's figures in one table."""
    result = Table(title="fault campaign: a real daemon process on a real libvirtd")
    result.add_column("measure")
    result.add_column("value", justify="right")
    rows = [
        ("kill -9 points", tally.kill_points),
        ("points survived (incl. bad-policy restarts, libvirtd restarts)", tally.survived),
        ("libvirtd restarts", tally.libvirtd_restarts),
        ("metric-source faults", tally.source_faults),
        ("bad policy files", tally.bad_policies),
        ("hostile HTTP requests", tally.http_requests),
        ("orphans (must be 0)", tally.orphans),
        ("foreign objects touched (must be 0)", tally.foreign_touched),
        ("scale-ins on missing data (must be 0)", tally.scale_ins_on_missing),
        ("tracebacks (must be 0)", tally.tracebacks),
        ("max convergence after a restart", f"{tally.max_convergence:.1f} s"),
        ("daemon peak RSS", f"{tally.peak_rss_mib:.0f} MiB"),
    ]
    for name, value in rows:
        result.add_row(name, str(value))
    return result


def _silent(_line: str) -> None:
    """Print no progress."""


def _progress(line: str) -> None:
    """One line per point on standard error, as it happens."""
    print(line, file=sys.stderr, flush=True)


async def main(args: argparse.Namespace) -> int:
    """Set a libvirt host up as the integration tests do, run the campaign, print the table."""
    console = Console(width=120, stderr=False)
    say = _silent if args.quiet else _progress
    work = Path(tempfile.mkdtemp(prefix="as-faults-"))
    os.chmod(work, 0o755)  # QEMU (libvirt-qemu) reaches the pool's images below it
    pool = work.name
    with libvirt_env._kvm_permissions(), libvirt_env._daemons(work) as daemons:
        golden = libvirt_env._make_pool(work, pool)
        template = work / "template.xml"
        template.write_text(libvirt_env.template_xml(libvirt_env.domain_type(), golden))
        env = libvirt_env.LibvirtEnv(libvirt_env.URI, work, pool, golden, str(template), "", daemons)
        host = demo_host.DemoHost(env.uri, libvirt_env.domain_type(), pool, golden, str(template), 0)

        async def restart() -> None:
            await asyncio.to_thread(env.stop_libvirtd)
            await asyncio.to_thread(env.start_libvirtd)
            await asyncio.to_thread(libvirt_env._wait_until_answering)

        owned = daemons.libvirtd is not None
        if not owned:
            say("libvirtd was already running (shared): it is not restarted")
        try:
            tally = await campaign.run(
                host,
                work / "campaign",
                seed=args.seed,
                kill_points=args.points,
                source_faults=SOURCE_FAULTS * (args.points // len(SOURCE_FAULTS) // 3 + 1),
                bad_policies=BAD,
                libvirtd_restarts=args.libvirtd_restarts if owned else 0,
                restart_libvirtd=restart if owned else None,
                fault_seconds=4.0,
                say=say,
            )
        finally:
            with contextlib.suppress(Exception):
                libvirt_env._remove_pool(pool)
    console.print(table(tally))
    for failure in tally.failures:
        console.print(f"[red]{failure}[/red]")
    clean = (tally.orphans, tally.foreign_touched, tally.scale_ins_on_missing, tally.tracebacks) == (
        0,
        0,
        0,
        0,
    )
    return 0 if clean and not tally.failures else 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--points", type=int, default=50, help="kill -9 points (at least 50 for the full run)"
    )
    parser.add_argument("--libvirtd-restarts", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
