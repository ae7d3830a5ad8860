"""Prometheus service discovery: GET /v1/targets in the http_sd format, and the same list as a file."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from autoscaler import model, settings
from autoscaler.engine import discovery
from autoscaler.policy import spec
from tests import fakes
from tests.runtime.test_daemon import POLICY, daemon_running, fake_target, make_settings

MEMBER = model.Instance("as-web-1", "u-1", model.InstanceState.READY, 0.0, host="qemu:///system")


def _policy(ports: tuple[int, ...]) -> spec.GroupPolicy:
    return spec.GroupPolicy.model_validate(
        {"group": "web", "golden": "g", "template": "t", "min": 0, "max": 3, "discovery": {"ports": ports}}
    )


@pytest.mark.parametrize(
    ("state", "addresses", "listed"),
    [
        (model.InstanceState.READY, ("10.0.0.5",), True),
        (model.InstanceState.DRAINING, ("10.0.0.5",), True),
        (model.InstanceState.BOOTING, ("10.0.0.5",), False),
        (model.InstanceState.FAILED, ("10.0.0.5",), False),
        (model.InstanceState.READY, (), False),
    ],
)
def test_ready_and_draining_members_with_an_address_are_listed(
    state: model.InstanceState, addresses: tuple[str, ...], listed: bool
) -> None:
    member = replace(MEMBER, state=state, addresses=addresses)
    found = discovery.target_groups(_policy((9100, 80)), model.GroupInventory("web", (member,)))
    assert bool(found) is listed
    if listed:
        assert found == [
            {
                "targets": ["10.0.0.5:9100", "10.0.0.5:80"],
                "labels": {
                    "group": "web",
                    "__meta_autoscaler_group": "web",
                    "__meta_autoscaler_instance_id": "u-1",
                    "__meta_autoscaler_domain": "as-web-1",
                    "__meta_autoscaler_host": "qemu:///system",
                    "__meta_autoscaler_state": state.value,
                },
            }
        ]


def test_without_exporter_ports_nothing_is_listed() -> None:
    member = replace(MEMBER, addresses=("10.0.0.5",))
    assert discovery.target_groups(_policy(()), model.GroupInventory("web", (member,))) == []


async def _targets(running: object) -> tuple[str, list[dict[str, object]]]:
    async with running.http.get(running.url + "/v1/targets") as response:  # type: ignore[attr-defined]
        assert response.status == 200
        return response.headers["Content-Type"], json.loads(await response.text())


async def test_the_endpoint_serves_an_empty_list_as_json(tmp_path: Path) -> None:
    config, _policies = make_settings(tmp_path)
    async with daemon_running(config, target=fake_target(members=2)) as running:
        content_type, body = await _targets(running)
    assert content_type == "application/json"
    assert body == []  # the policy names no exporter port


async def test_the_endpoint_and_the_file_list_the_ready_members(tmp_path: Path) -> None:
    config, policies = make_settings(tmp_path)
    (policies / "web.yaml").write_text(POLICY + "discovery: {ports: [9100]}\n")
    sd_file = tmp_path / "sd" / "autoscaler.json"
    config = replace(config, discovery=settings.DiscoverySettings(file=str(sd_file), interval=0.05))
    target = fake_target(members=2)
    async with daemon_running(config, target=target) as running:
        _content_type, body = await _targets(running)
        assert sorted(e["labels"]["__meta_autoscaler_domain"] for e in body) == sorted(target.names("web"))  # type: ignore[index]
        await fakes.eventually(lambda: sd_file.exists() and json.loads(sd_file.read_text()) == body, 5.0)
        target.members["web"] = target.members["web"][:1]
        await fakes.eventually(lambda: len(json.loads(sd_file.read_text())) == 1, 5.0)
        await asyncio.sleep(0)
    assert not list(sd_file.parent.glob(".*.tmp"))  # no temporary file left behind


async def test_status_shows_each_members_addresses(tmp_path: Path) -> None:
    from autoscaler.runtime import status

    config, _policies = make_settings(tmp_path)
    target = fake_target(members=2)
    async with daemon_running(config, target=target) as running:
        await fakes.eventually(lambda: running.handler().inventory is not None, 5.0)
        document = await asyncio.to_thread(status.fetch, running.url)
    [group] = document["groups"]
    assert [m["addresses"] for m in group["members"]] == [list(i.addresses) for i in target.members["web"]]
    text = status.render(document)
    for member in target.members["web"]:
        assert f"{member.name:<24} ready     {member.addresses[0]:<18} " in text
