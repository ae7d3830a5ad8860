"""The served world: test guests behind HAProxy in the demo's own network namespace, measured by Prometheus.

`open_rig` starts the namespace rig (autoscaler/demo/netns.py: private libvirtd, isolated DHCP
network 10.77.0.0/24, the test guest image) and moves the demo process into its network, so the
daemon, its HTTP endpoint, the load generator and every socket they open live there and nowhere
else. `start` then adds HAProxy (frontend on the namespace's 127.0.0.1, admin socket in the work
directory, an empty backend the daemon fills) and Prometheus (scraping the members the daemon lists
at /v1/targets), and writes the served group's policy. The rig's `stop` removes all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from autoscaler.demo import config, host, netns
from autoscaler.serving import haproxy_process

FRONTEND_PORT = 8080
"""HAProxy's frontend inside the namespace (which is fresh, so the port is free)."""


@dataclass
class ServedWorld:
    """What the served demo started in the namespace, beyond the rig itself."""

    rig: netns.Rig
    frontend: str
    """URL the load generator sends to (HAProxy, on the namespace's loopback)."""
    prometheus_url: str
    prepared: host.DemoHost


def open_rig(workdir: Path, scratch: Path) -> netns.Rig:
    """The namespace rig, started and joined by this (still single-threaded) process.

    Should the demo be killed outright, the rig's holder empties the namespace and removes `scratch`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    rig = netns.Rig.start(workdir, scratch=scratch)
    try:
        rig.join()
    except BaseException:
        rig.stop()
        raise
    return rig


async def start(rig: netns.Rig, workdir: Path, daemon_port: int) -> ServedWorld:
    """HAProxy and Prometheus in the namespace, the template and the served policy's host."""
    admin_socket = workdir / "haproxy.sock"
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(config.haproxy_cfg(str(admin_socket), FRONTEND_PORT), encoding="utf-8")
    haproxy = rig.spawn("haproxy", haproxy_process.command(cfg))
    try:
        await haproxy_process.wait_answering(str(admin_socket), haproxy.alive, deadline=20.0)
    except haproxy_process.HaproxyFailed as exc:
        raise netns.RigError(f"{exc}:\n{haproxy.tail()}") from exc
    daemon_url = f"http://127.0.0.1:{daemon_port}"
    prometheus = await asyncio.to_thread(rig.start_prometheus, config.scrape_job(daemon_url))
    template = rig.write_template("as-demo-template")
    prepared = host.DemoHost(
        uri=rig.uri,
        kind="QEMU (TCG) test guests behind HAProxy, in a private network namespace",
        pool=rig.pool,
        golden=str(rig.golden),
        template=str(template),
        memory_reserve_mib=0,
    )
    prepared.policy_text = config.served_policy_yaml(
        prepared.golden, prepared.template, prepared.pool, str(admin_socket)
    )
    return ServedWorld(rig, f"http://127.0.0.1:{FRONTEND_PORT}/", prometheus.url, prepared)


def stop(rig: netns.Rig) -> None:
    """Everything the namespace holds: domains, network, HAProxy, Prometheus, libvirtd, the holder."""
    with contextlib.suppress(Exception):
        rig.stop()
