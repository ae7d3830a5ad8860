"""The volume ledger in a real 3-member etcd: durable before the volume exists, readable by any
daemon, and never "not ours" when etcd cannot answer (so nothing is deleted then)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autoscaler import errors
from autoscaler.coordination import etcd as etcd_client
from autoscaler.coordination import ledger as etcd_ledger
from autoscaler.targets import ownership
from tests.coordination import rig

HOST = "qemu+ssh://root@hv1/system?keyfile=/k&no_verify=1"
OTHER = "qemu+ssh://root@hv1/system?keyfile=/k&no_verify=10"  # the first host's URI is its prefix


@pytest.fixture
def prefix() -> str:
    return f"/t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(etcd: rig.EtcdCluster) -> AsyncIterator[etcd_client.Client]:
    found = etcd_client.Client(etcd.endpoints, timeout=1.0)
    yield found
    await found.close()


async def test_an_intent_is_owned_listed_by_host_and_forgotten(
    client: etcd_client.Client, prefix: str
) -> None:
    ledger = etcd_ledger.EtcdLedger(client, prefix, clock=lambda: 1000.0)
    assert await ledger.owns(HOST, "as-pool", "as-web-1.qcow2") is None

    intent = await ledger.intend(HOST, "as-pool", "as-web-1.qcow2", "overlay", "uuid-1")
    await ledger.intend(HOST, "pool/with/slashes", "seed-1.iso", "seed", "uuid-1")
    await ledger.intend(OTHER, "as-pool", "as-web-2.qcow2", "overlay", "uuid-2")

    assert intent == ownership.Intent(HOST, "as-pool", "as-web-1.qcow2", "overlay", "uuid-1", 1000.0)
    assert await ledger.owns(HOST, "as-pool", "as-web-1.qcow2") == intent
    assert await ledger.owns(OTHER, "as-pool", "as-web-1.qcow2") is None, "another host's volume"
    assert {i.name for i in await ledger.entries(HOST)} == {"as-web-1.qcow2", "seed-1.iso"}
    assert [i.name for i in await ledger.entries(OTHER)] == ["as-web-2.qcow2"]
    assert (await client.range(ledger.key(HOST, "as-pool", "as-web-1.qcow2"))) is not None
    assert ledger.key(HOST, "as-pool", "x").startswith(f"{prefix}/volumes/")

    await ledger.forget(HOST, "as-pool", "as-web-1.qcow2")
    await ledger.forget(HOST, "as-pool", "as-web-1.qcow2")  # idempotent
    assert await ledger.owns(HOST, "as-pool", "as-web-1.qcow2") is None
    assert [i.name for i in await ledger.entries(HOST)] == ["seed-1.iso"]


async def test_an_intent_survives_its_writer_and_is_read_through_another_member(
    etcd: rig.EtcdCluster, client: etcd_client.Client, prefix: str
) -> None:
    written = await etcd_ledger.EtcdLedger(client, prefix).intend(HOST, "p", "v", "overlay", "u")
    await client.close()
    for endpoint in etcd.endpoints:  # each member answers with what the quorum acknowledged
        reader = etcd_client.Client([endpoint], timeout=1.0)
        try:
            assert await etcd_ledger.EtcdLedger(reader, prefix).owns(HOST, "p", "v") == written
        finally:
            await reader.close()


async def test_an_unreachable_etcd_raises_and_never_answers_not_ours(prefix: str) -> None:
    port = rig.free_ports(1)[0]
    client = etcd_client.Client([f"http://127.0.0.1:{port}"], timeout=0.3)
    ledger = etcd_ledger.EtcdLedger(client, prefix)
    try:
        for call in (
            ledger.owns(HOST, "p", "v"),
            ledger.entries(HOST),
            ledger.intend(HOST, "p", "v", "overlay", "u"),
            ledger.forget(HOST, "p", "v"),
        ):
            with pytest.raises(errors.LedgerUnavailable) as raised:
                await call
            assert isinstance(raised.value, errors.TargetTemporary)
            assert isinstance(raised.value, errors.CoordinationUnavailable)
    finally:
        await client.close()


async def test_without_quorum_an_owned_volume_is_an_error_not_unowned(
    etcd: rig.EtcdCluster, client: etcd_client.Client, prefix: str
) -> None:
    ledger = etcd_ledger.EtcdLedger(client, prefix)
    await ledger.intend(HOST, "p", "v", "overlay", "u")
    etcd.kill(1)
    etcd.kill(2)
    try:  # member 0 still holds the key but cannot prove it current: a linearizable read fails
        lonely = etcd_client.Client([etcd.endpoints[0]], timeout=0.5)
        try:
            with pytest.raises(errors.LedgerUnavailable):
                await etcd_ledger.EtcdLedger(lonely, prefix).owns(HOST, "p", "v")
            with pytest.raises(errors.LedgerUnavailable):
                await etcd_ledger.EtcdLedger(lonely, prefix).entries(HOST)
        finally:
            await lonely.close()
    finally:
        etcd.start(1)
        etcd.start(2)
        etcd.wait_healthy()
    assert await ledger.owns(HOST, "p", "v") is not None


async def test_a_file_ledger_is_moved_into_etcd_once(
    client: etcd_client.Client, prefix: str, tmp_path: Path
) -> None:
    directory = tmp_path / "volumes"
    files = ownership.FileLedger(directory, clock=lambda: 5.0)
    await files.intend(HOST, "p", "old.qcow2", "overlay", "u1")
    await files.intend(OTHER, "p", "kept.qcow2", "overlay", "u2")
    ledger = etcd_ledger.EtcdLedger(client, prefix, clock=lambda: 9.0)
    newer = await ledger.intend(OTHER, "p", "kept.qcow2", "overlay", "u3")  # etcd's record wins

    assert await etcd_ledger.migrate(directory, ledger) == 1

    assert await ledger.owns(HOST, "p", "old.qcow2") == ownership.Intent(
        HOST, "p", "old.qcow2", "overlay", "u1", 5.0
    )
    assert await ledger.owns(OTHER, "p", "kept.qcow2") == newer
    assert not directory.exists()
    assert _records_kept(tmp_path) == 2, "the moved records stay on disk for reference"
    await ledger.forget(HOST, "p", "old.qcow2")
    assert await etcd_ledger.migrate(directory, ledger) == 0, "copied once only"
    assert await ledger.owns(HOST, "p", "old.qcow2") is None


async def test_a_migration_etcd_refuses_keeps_the_file_ledger(prefix: str, tmp_path: Path) -> None:
    directory = tmp_path / "volumes"
    await ownership.FileLedger(directory).intend(HOST, "p", "v", "overlay", "u")
    client = etcd_client.Client([f"http://127.0.0.1:{rig.free_ports(1)[0]}"], timeout=0.3)
    try:
        with pytest.raises(errors.LedgerUnavailable):
            await etcd_ledger.migrate(directory, etcd_ledger.EtcdLedger(client, prefix))
    finally:
        await client.close()
    assert await ownership.FileLedger(directory).owns(HOST, "p", "v") is not None


def _records_kept(parent: Path) -> int:
    [kept] = parent.glob(f"volumes{etcd_ledger.MIGRATED_SUFFIX}-*")
    return len(list(kept.glob("*.json")))
