"""Members' addresses: asked for until a guest has one, then re-read rarely; kept across listings."""

from __future__ import annotations

import pathlib
import time

from autoscaler.targets import addresses, kvm
from tests.targets.hosts import eventually, fast_settings, host_uri, new_member, web_policy


async def test_addresses_survive_a_full_listing_and_reach_the_inventory(tmp_path: pathlib.Path) -> None:
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings(), policies=[web_policy()])
    await target.start()
    try:
        record = await new_member(target)
        cached = lambda: target._cache.find("web", record.name)  # noqa: E731
        await eventually(lambda: cached().addresses == ("192.168.0.1",))  # type: ignore[union-attr]
        await target.reconcile()  # a full listing replaces the cached records
        [member] = (await target.inventory("web")).instances
        assert member.addresses == ("192.168.0.1",)
    finally:
        await target.close()


async def test_a_member_without_an_address_is_asked_again_soon_one_with_an_address_rarely(
    tmp_path: pathlib.Path,
) -> None:
    settings = fast_settings(address_retry=2.0, address_interval=30.0)
    target = kvm.KvmTarget(host_uri(tmp_path), settings=settings, policies=[web_policy()])
    await target.start()
    try:
        record = await new_member(target)
        state = target._state
        now = time.monotonic()
        record.addresses_read = now - 3.0
        assert addresses._due(state, record, now)
        record.addresses = ("10.77.0.105",)
        assert not addresses._due(state, record, now)
        record.addresses_read = now - 31.0
        assert addresses._due(state, record, now)
        record.run = "shutoff"
        assert not addresses._due(state, record, now)
        record.run = "running"
        await addresses.refresh(state)  # the test driver reports one fixed address per NIC
        assert record.addresses == ("192.168.0.1",)
        assert record.addresses_read >= now
    finally:
        await target.close()
