"""Faults on one domain or one host must stay local: the rest is still reconciled, recovered and scaled."""

from __future__ import annotations

import pathlib
from typing import Any

import libvirt
import pytest

from autoscaler import errors
from autoscaler.targets import kvm, lifecycle, maintenance
from autoscaler.targets.inventory import Record
from autoscaler.virt import ops, xml
from tests.targets.hosts import (
    RecordingObserver,
    eventually,
    fast_settings,
    host_uri,
    libvirt_error,
    our_domain,
    web_policy,
)


def fail_undefine_of(monkeypatch: pytest.MonkeyPatch, uuids: set[str]) -> None:
    """Undefining these domains keeps failing the way a stuck QEMU job makes it fail."""
    undefine = ops.undefine

    def failing(conn: Any, uuid: str) -> None:
        if uuid in uuids:
            raise libvirt_error(
                libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_FROM_QEMU, "cannot acquire state change lock"
            )
        undefine(conn, uuid)

    monkeypatch.setattr(ops, "undefine", failing)


async def drain_in_libvirt(target: kvm.KvmTarget, record: Record) -> None:
    """phase=draining written behind the cache's back, as a crashed scale-in leaves it."""
    gw = target.gateway(record.host)
    await lifecycle.set_phase(gw, record.uuid, record.owner.with_phase(xml.Phase.DRAINING))


async def names_on(target: kvm.KvmTarget, host: str) -> set[str]:
    return {v.name for v in await target.gateway(host).run(ops.list_domains, op="list")}


async def test_one_unremovable_domain_leaves_the_rest_reconciled(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = host_uri(tmp_path, "h1"), host_uri(tmp_path, "h2")
    target = kvm.KvmTarget([first, second], settings=fast_settings(), policies=[web_policy()])
    await target.start()
    try:
        await target.scale_out(web_policy(), 4)
        await eventually(lambda: all(r.owner.ready for r in target._cache.group("web")))
        on_first = sorted((r for r in target._cache.members("web") if r.host == first), key=lambda r: r.name)
        on_second = [r for r in target._cache.members("web") if r.host == second]
        stuck, finishable = on_first[0], on_first[1]
        for record in (stuck, finishable, on_second[0]):
            await drain_in_libvirt(target, record)
        fail_undefine_of(monkeypatch, {stuck.uuid})

        reports = await target.reconcile()

        assert [r.failed_removals for r in reports] == [[stuck.name], []]
        assert [r.finished_deletes for r in reports] == [[finishable.name], [on_second[0].name]]
        assert finishable.name not in await names_on(target, first)
        assert on_second[0].name not in await names_on(target, second)
        assert target.ready
    finally:
        await target.close()


async def test_reconnect_with_an_unremovable_domain_recovers_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = "5a1e0000-0000-4000-8000-000000000001"
    owner = xml.Ownership("web", "golden-web.qcow2", "r1", 1.0, xml.Phase.DRAINING)
    uri = host_uri(tmp_path, domains=[our_domain(stuck, owner)])
    fail_undefine_of(monkeypatch, {stuck})
    observer = RecordingObserver()
    target = kvm.KvmTarget(uri, settings=fast_settings(), policies=[web_policy()], observer=observer)
    await target.start()
    try:
        assert target.ready
        target.gateway(uri).mark_broken()  # libvirtd restarted; the draining domain is still there
        await eventually(lambda: observer.reconnects and target.ready and not target._state.recovering)

        assert observer.reconnects == [uri]
        assert target.gateway(uri).connected
        assert xml.clone_name("web", stuck) in await names_on(target, uri)
    finally:
        await target.close()


async def test_failing_reconcile_after_reconnect_is_retried_on_the_same_connection(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    observer = RecordingObserver()
    target = kvm.KvmTarget(
        host_uri(tmp_path), settings=fast_settings(), policies=[web_policy()], observer=observer
    )
    await target.start()
    reconcile_host = maintenance._reconcile_host
    attempts: list[str] = []

    async def failing_thrice(state: Any, gw: Any) -> Any:
        attempts.append(gw.uri)
        if len(attempts) <= 3:
            raise errors.TargetTemporary("list: no answer within 120s")
        return await reconcile_host(state, gw)

    monkeypatch.setattr(maintenance, "_reconcile_host", failing_thrice)
    try:
        target.gateway(target.hosts[0]).mark_broken()
        await eventually(lambda: len(attempts) == 4 and target.ready and not target._state.recovering)

        assert observer.reconnects == [target.hosts[0]]
    finally:
        await target.close()
