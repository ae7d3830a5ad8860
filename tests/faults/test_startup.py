"""A crash mid scale-in is finished by the next start, because the start's reconcile knows the
policies; a group governed later is reconciled at once, not at the next periodic pass."""

from __future__ import annotations

import asyncio
import pathlib
import time
from dataclasses import replace

from prometheus_client import CollectorRegistry

from autoscaler import settings
from autoscaler.runtime import daemon
from autoscaler.targets import kvm
from autoscaler.virt import ops, xml
from tests import fakes
from tests.targets.hosts import FIXTURE, eventually, fast_settings, host_uri, web_policy

POLICY = """\
group: web
golden: golden-web.qcow2
template: web-template
pool: default
min: 0
max: 10
evaluation_interval: 1h
checks:
  - name: load
    source: fake
    query: load
    strategy: {kind: per_instance, per_instance: 10, tolerance: 0}
"""


def draining_domain(uuid: str, group: str = "web") -> str:
    """One of our domains left phase=draining by a crash, as the host file would keep it."""
    template = FIXTURE.read_text().split("<domain type='kvm'>")[1].split("</domain>")[0]
    owner = xml.Ownership(group, "golden-web.qcow2", "g1", time.time() - 60, xml.Phase.DRAINING, "h")
    overlay = f"/var/lib/autoscaler-test/{xml.overlay_name(group, uuid)}"
    spec = xml.CloneSpec(
        xml.clone_name(group, uuid),
        uuid,
        overlay,
        "/var/lib/autoscaler-test/golden-web.qcow2",
        "qcow2",
        owner,
    )
    return xml.clone_domain_xml(f"<domain type='kvm'>{template}</domain>", spec)


UUID = "1c0ffee0-0000-4000-8000-000000000001"


async def names(target: kvm.KvmTarget) -> set[str]:
    views = await target.gateway(target.hosts[0]).run(ops.list_domains, op="list")
    return {v.name for v in views}


async def test_the_daemon_finishes_a_crashed_scale_in_before_it_says_ready(tmp_path: pathlib.Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(POLICY)
    config = settings.Settings(
        policies=(str(policies),), state_dir=str(tmp_path / "state"), http=settings.HttpSettings(port=0)
    )
    config = replace(config, engine=replace(config.engine, jitter=0.0))
    target = kvm.KvmTarget(
        host_uri(tmp_path, domains=[draining_domain(UUID)]),
        settings=fast_settings(reconcile_interval=3600.0, watch_interval=3600.0),
    )
    runner = daemon.Daemon(
        config, target=target, metric_sources={"fake": fakes.FakeMetricSource()}, registry=CollectorRegistry()
    )
    task = asyncio.create_task(runner.run())
    try:
        await fakes.eventually(lambda: runner.started.is_set() or task.done(), 10.0)
        assert xml.clone_name("web", UUID) not in await names(target)
        web = runner.status()["groups"][0]
        assert web["current"] + web["draining"] == len(web["members"])
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 10)


async def test_a_group_governed_after_the_start_is_reconciled_at_once(tmp_path: pathlib.Path) -> None:
    target = kvm.KvmTarget(
        host_uri(tmp_path, domains=[draining_domain(UUID)]), settings=fast_settings(reconcile_interval=3600.0)
    )
    await target.start()
    try:
        assert target.unmanaged() == {"web": 1}  # no policy yet: left alone
        target.set_policies([web_policy()])
        name = xml.clone_name("web", UUID)
        found: set[str] = {name}

        async def gone() -> None:
            found.clear()
            found.update(await names(target))

        deadline = time.monotonic() + 5.0
        while name in found and time.monotonic() < deadline:
            await gone()
            await asyncio.sleep(0.05)
        assert name not in found
        await eventually(lambda: target.unmanaged() == {})
    finally:
        await target.close()
