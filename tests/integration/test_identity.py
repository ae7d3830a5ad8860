"""Every clone its own identity and address, found by Prometheus: the real thing, in a private netns.

The daemon (`autoscaler run`), libvirtd, dnsmasq and Prometheus all run inside the namespace rig
(tests/integration/netns.py). Three TCG clones boot in parallel from the test guest, each with a
cloud-init seed the daemon built and uploaded; each reads its seed and SMBIOS serial, takes a
DHCP lease and serves HTTP. Prometheus knows nothing but the daemon's http_sd URL (and the
relabelling of deploy/prometheus.yml). Then a scale-in removes one clone with its seed, and a
crash between a seed's upload and its domain's define is reconciled away by the next start.
"""

from __future__ import annotations

import json
import pathlib
import re
import time
from typing import Any

import pytest
import yaml

from autoscaler.identity import seed
from autoscaler.targets import ownership, seeds
from autoscaler.targets.volumes import Volumes
from autoscaler.virt import gateway, ops, xml
from tests.integration import netns

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.integration_prometheus, pytest.mark.slow]
ROOT = pathlib.Path(__file__).resolve().parents[2]
GROUP = "idt"
REFRESH = 2.0
"""http_sd refresh interval of the test's Prometheus."""
SCRAPE = 2.0
"""Its scrape interval (a TCG guest's shell handler can take most of a second to answer)."""
USER_DATA = "#cloud-config\n# ${group} on ${host}\nfqdn: ${hostname}.test\ninstance: ${instance_id}\n"
NETWORK = "version: 2\nethernets:\n  all: {match: {name: 'e*'}, dhcp4: true}\n"


POLICY = """group: idt
golden: GOLDEN
template: TEMPLATE
pool: POOL
min: SIZE
max: SIZE
evaluation_interval: 1s
warmup: 0s
scale_up: {cooldown: 0s}
scale_down: {stabilization: 0s, cooldown: 0s}
readiness: {probe: tcp, port: 80, interval: 0.5s, timeout: 150s}
instance:
  hostname: "idt-${instance_id}"
  user_data: seed/user-data
  network_config: seed/network-config
discovery: {ports: [80]}
"""


class Daemon:
    """The daemon under test, run inside the namespace, and what the test reads from it."""

    def __init__(self, rig: netns.Rig, workdir: pathlib.Path) -> None:
        self.rig = rig
        self.workdir = workdir
        self.policies = workdir / "policies"
        self.state = workdir / "state"
        self.port = rig.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: netns.Process | None = None
        self.runs = 0

    def configure(self, size: int) -> None:
        (self.policies / "seed").mkdir(parents=True, exist_ok=True)
        (self.policies / "seed" / "user-data").write_text(USER_DATA)
        (self.policies / "seed" / "network-config").write_text(NETWORK)
        template = self.rig.write_template("as-idt-template")
        text = POLICY.replace("GOLDEN", str(self.rig.golden)).replace("TEMPLATE", str(template))
        text = text.replace("POOL", self.rig.pool).replace("SIZE", str(size))
        temporary = self.policies / ".idt.yaml.tmp"
        temporary.write_text(text)
        temporary.replace(self.policies / "idt.yaml")
        settings = {
            "policies": [str(self.policies)],
            "state_dir": str(self.state),
            "http": {"listen": "127.0.0.1", "port": self.port},
            "target": {
                "uris": [self.rig.uri],
                "memory_reserve_mib": 0,
                "shutdown_timeout": "10s",
                "reconcile_interval": "1h",
            },
            "engine": {"jitter": "0s", "policy_poll": "1s", "shutdown_grace": "10s"},
            "log": {"level": "info", "format": "json"},
        }
        (self.workdir / "autoscaler.yaml").write_text(yaml.safe_dump(settings))

    async def start(self) -> None:
        self.runs += 1
        argv = [
            str(ROOT / ".venv" / "bin" / "autoscaler"),
            "run",
            "--config",
            str(self.workdir / "autoscaler.yaml"),
        ]
        self.process = self.rig.spawn(f"autoscaler-{self.runs}", argv)
        await netns.wait_for(self._ready, 60.0, f"the daemon to be ready\n{self.process.tail()}")

    async def _ready(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            pytest.fail(f"the daemon exited:\n{self.process.tail()}")
        return (await self.rig.get(f"{self.url}/readyz"))[0] == 200

    def log(self) -> str:
        return self.process.tail() if self.process is not None else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    async def json(self, path: str) -> Any:
        status, body = await self.rig.get(f"{self.url}{path}")
        assert status == 200, body
        return json.loads(body)

    async def members(self) -> list[dict[str, Any]]:
        status = await self.json("/status")
        groups = [g for g in status["groups"] if g["group"] == GROUP]
        return groups[0]["members"] if groups else []


def _seed_volumes(rig: netns.Rig) -> set[str]:
    listing = rig.virsh("vol-list", rig.pool).stdout
    return {name for name in re.findall(r"^\s*(\S+)\s", listing, re.M) if xml.SEED_NAME.match(name)}


async def _all_ready(daemon: Daemon, count: int) -> list[dict[str, Any]] | None:
    members = await daemon.members()
    ready = [m for m in members if m["state"] == "ready" and m["addresses"]]
    return ready if len(ready) == count == len(members) else None


async def _page(rig: netns.Rig, address: str) -> str | None:
    status, body = await rig.get(f"http://{address}/", seconds=15.0)
    return body.strip() if status == 200 else None


def _prometheus_job(daemon: Daemon) -> str:
    """deploy/prometheus.yml's member job, pointed at this daemon, refreshed every REFRESH s."""
    deployed = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    [job] = [j for j in deployed["scrape_configs"] if j["job_name"] == "autoscaler-members"]
    job.update(scrape_interval=f"{SCRAPE:g}s", scrape_timeout=f"{int(SCRAPE * 1000) - 200}ms")
    job["http_sd_configs"] = [{"url": f"{daemon.url}/v1/targets", "refresh_interval": f"{REFRESH:g}s"}]
    text = yaml.safe_dump([job], sort_keys=False)
    return "".join(f"  {line}\n" for line in text.splitlines())


async def _scraped(prometheus: netns.Prometheus) -> dict[str, dict[str, str]]:
    """Scraped member series by instance_id: {instance_id: labels} of guest_http_requests_total."""
    data = await prometheus.api("/api/v1/query?query=guest_http_requests_total")
    return {r["metric"]["instance_id"]: r["metric"] for r in data["result"]}


async def _crash_after_seed_upload(rig: netns.Rig, daemon: Daemon) -> str:
    """What a daemon that died between a seed's upload and its define leaves: a recorded seed.

    The very code the daemon runs (ledger intent, volume create, upload) runs here against the
    same libvirtd and state directory; the intent is dated an hour back, past every grace period.
    """
    executor = gateway.new_executor()
    gw = gateway.Gateway(rig.uri, executor)
    await gw.open()
    try:
        ledger = ownership.FileLedger(daemon.state / "volumes", clock=lambda: time.time() - 3600)
        crashed = "0123abcd-dead-4222-8333-444455556666"
        identity = seed.Identity("as-idt-0123abcd", crashed, "idt-crashed", GROUP, "host")
        disk = await seeds.create(
            gw, Volumes(ledger, {gw.uri: gw}), rig.pool, GROUP, crashed, seed.build(identity, "", None)
        )
        assert disk.volume in {v.name for v in await gw.run(ops.list_volumes, rig.pool, op="vol_list")}
        return disk.volume
    finally:
        await gw.close()
        executor.shutdown(wait=True)


async def test_three_clones_each_their_own_identity_address_and_scrape(netns_rig: netns.Rig) -> None:
    workdir = netns_rig.workdir / "identity-test"
    workdir.mkdir()
    daemon = Daemon(netns_rig, workdir)
    daemon.configure(size=3)
    try:
        await daemon.start()
        prometheus = netns_rig.start_prometheus(_prometheus_job(daemon), name="prometheus-identity")

        # Three clones, each ready with its own address, seed and page.
        started = time.monotonic()
        members = await netns.wait_for(lambda: _all_ready(daemon, 3), 150.0, "three ready clones")
        listed_at = time.monotonic()
        print(f"three clones ready with addresses {listed_at - started:.1f}s after the daemon started")
        uuids = {m["name"]: _uuid_of(netns_rig, m["name"]) for m in members}
        addresses = [m["addresses"][0] for m in members]
        assert len(set(addresses)) == 3
        assert all(a.startswith("10.77.0.") for a in addresses)
        pages = {}
        for member, address in zip(members, addresses, strict=True):
            pages[member["name"]] = await netns.wait_for(lambda a=address: _page(netns_rig, a), 60.0, "page")
        for name, page in pages.items():
            assert page == f"hostname=idt-{uuids[name]} instance-id={uuids[name]}"
        status, user_data = await netns_rig.get(f"http://{addresses[0]}/user-data", seconds=15.0)
        first = members[0]["name"]
        assert status == 200
        assert f"instance: {uuids[first]}" in user_data
        assert f"fqdn: idt-{uuids[first]}.test" in user_data
        assert _seed_volumes(netns_rig) == {xml.seed_name(GROUP, u) for u in uuids.values()}

        # Prometheus, told only the http_sd URL, scrapes every clone within its refresh interval.
        targets = await daemon.json("/v1/targets")
        assert sorted(t["targets"][0] for t in targets) == sorted(f"{a}:80" for a in addresses)
        try:
            scraped = await netns.wait_for(
                lambda: _all_scraped(prometheus, set(uuids.values())),
                REFRESH + 2 * SCRAPE + 5.0,
                "every clone scraped",
            )
        except pytest.fail.Exception:
            found = await prometheus.api("/api/v1/targets")
            pytest.fail(f"not every clone scraped; targets: {found}\n{prometheus.process.tail()}")
        took = time.monotonic() - listed_at
        print(f"all three clones scraped {took:.1f}s after the daemon listed them (refresh {REFRESH}s)")
        for name, uuid in uuids.items():
            labels = scraped[uuid]
            assert (labels["group"], labels["domain"], labels["state"]) == (GROUP, name, "ready")

        # Scale-in: the removed clone's seed goes with it.
        daemon.configure(size=2)
        started = time.monotonic()
        await netns.wait_for(lambda: _all_ready(daemon, 2), 60.0, "the group at two")
        remaining = {m["name"] for m in await daemon.members()}
        [gone] = set(uuids) - remaining
        await netns.wait_for(
            lambda: xml.seed_name(GROUP, uuids[gone]) not in _seed_volumes(netns_rig),
            30.0,
            "the seed deleted",
        )
        assert _seed_volumes(netns_rig) == {xml.seed_name(GROUP, uuids[n]) for n in remaining}
        print(f"scale-in with the seed deleted in {time.monotonic() - started:.1f}s")

        # A crash between a seed's upload and its define: the next start reconciles it away.
        daemon.stop()
        orphan = await _crash_after_seed_upload(netns_rig, daemon)
        await daemon.start()
        await netns.wait_for(
            lambda: orphan not in _seed_volumes(netns_rig), 30.0, f"the orphan seed swept\n{daemon.log()}"
        )
        assert _seed_volumes(netns_rig) == {xml.seed_name(GROUP, uuids[n]) for n in remaining}
        assert {m["name"] for m in await daemon.members()} == remaining  # adopted, not touched
        prometheus.process.stop()
    finally:
        daemon.stop()
        netns_rig.remove_domains(f"as-{GROUP}-", volume_prefix=f"as-{GROUP}-")


async def _all_scraped(prometheus: netns.Prometheus, wanted: set[str]) -> dict[str, dict[str, str]] | None:
    scraped = await _scraped(prometheus)
    return scraped if set(scraped) == wanted else None


def _uuid_of(rig: netns.Rig, name: str) -> str:
    return rig.virsh("domuuid", name).stdout.strip()
