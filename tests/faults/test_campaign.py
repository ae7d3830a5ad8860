"""The bounded, seeded fault campaign on a real daemon process and a real libvirtd (see campaign.py):
kill -9 at 10 points of scale-out and scale-in, metric faults, bad policies, hostile HTTP requests,
foreign look-alike volumes and domains. Nothing foreign is touched, nothing is left orphaned, no
member goes while data is missing, and the daemon never prints a traceback."""

from __future__ import annotations

import pathlib

import pytest

from autoscaler.demo import host as demo_host
from tests.faults import campaign
from tests.integration import libvirt_env

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.slow]


async def test_the_daemon_survives_the_campaign(
    libvirt_host: libvirt_env.LibvirtEnv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = pathlib.Path(libvirt_host.workdir) / "campaign"  # QEMU reaches the pool under it
    host = demo_host.DemoHost(
        libvirt_host.uri,
        libvirt_host.domain_type,
        libvirt_host.pool,
        libvirt_host.golden,
        libvirt_host.template,
        0,
    )
    work.mkdir(exist_ok=True)
    tally = await campaign.run(
        host,
        work,
        seed=20261206,
        kill_points=10,
        source_faults=["error", "huge"],
        bad_policies=[("deep", True)],
        fault_seconds=2.0,
        http_again=False,
        step=1,
    )

    assert tally.failures == []
    assert tally.survived == tally.kill_points + 1 == 11
    assert (tally.orphans, tally.foreign_touched, tally.scale_ins_on_missing, tally.tracebacks) == (
        0,
        0,
        0,
        0,
    )
