"""The gateway is the one choke point: every call not known to be read-only asks the fence first,
and the worker thread drops a call whose proof of leadership ran out while it waited."""

from __future__ import annotations

import ast
import pathlib
import time
from collections.abc import AsyncIterator

import pytest

from autoscaler import errors
from autoscaler.virt import gateway, ops
from tests.targets.hosts import host_uri

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "autoscaler"
MUTATING = {
    "define",
    "start",
    "destroy",
    "undefine",
    "shutdown",
    "suspend",
    "metadata",
    "vol_create",
    "vol_upload",
    "vol_delete",
}


class ScriptedFence:
    """A fence that admits until a given time, or refuses; records what it was asked."""

    def __init__(self, until: float | None) -> None:
        self.until = until
        self.asked: list[str] = []

    async def admit(self, op: str, uri: str) -> float:
        self.asked.append(op)
        if self.until is None:
            raise errors.Fenced(f"{op} on {uri} refused: not the leader")
        return self.until


@pytest.fixture
async def opened(tmp_path: pathlib.Path) -> AsyncIterator[gateway.Gateway]:
    executor = gateway.new_executor()
    gw = gateway.Gateway(host_uri(tmp_path), executor)
    await gw.open()
    yield gw
    await gw.close()
    executor.shutdown(wait=True)


async def _domain_names(gw: gateway.Gateway) -> set[str]:
    return {view.name for view in await gw.run(ops.list_domains, op="list")}


async def test_a_refused_fence_keeps_the_call_from_libvirt(opened: gateway.Gateway) -> None:
    victim = await opened.run(ops.find_by_name, "as-web-deadbeef", op="lookup")
    fence = ScriptedFence(until=None)
    opened.fence = fence
    with pytest.raises(errors.Fenced):
        await opened.run(ops.destroy, victim.uuid, op="destroy")
    assert fence.asked == ["destroy"]
    opened.fence = None
    assert (await opened.run(ops.get_domain, victim.uuid, op="lookup")).run == "running"


async def test_a_proof_that_ran_out_before_the_worker_started_is_not_used(opened: gateway.Gateway) -> None:
    victim = await opened.run(ops.find_by_name, "as-web-deadbeef", op="lookup")
    opened.fence = ScriptedFence(until=time.monotonic() - 0.001)  # e.g. stalled after the proof
    with pytest.raises(errors.Fenced, match="ran out"):
        await opened.run(ops.destroy, victim.uuid, op="destroy")
    opened.fence = None
    assert (await opened.run(ops.get_domain, victim.uuid, op="lookup")).run == "running"


async def test_reads_do_not_ask_the_fence_and_valid_proofs_let_writes_through(
    opened: gateway.Gateway,
) -> None:
    fence = ScriptedFence(until=time.monotonic() + 60)
    opened.fence = fence
    victim = await opened.run(ops.find_by_name, "as-web-deadbeef", op="lookup")
    assert "as-web-deadbeef" in await _domain_names(opened)
    assert fence.asked == []
    await opened.run(ops.destroy, victim.uuid, op="destroy")
    assert fence.asked == ["destroy"]


def _ops_in_source() -> set[str]:
    """Every literal `op="..."` passed anywhere in the package."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    value = keyword.value
                    if (
                        keyword.arg == "op"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        found.add(value.value)
    return found


def test_every_op_that_changes_a_host_is_fenced() -> None:
    used = _ops_in_source()
    assert used >= MUTATING, "the list of mutating ops is out of date"
    assert not MUTATING & gateway.READ_ONLY_OPS
    unknown = used - gateway.READ_ONLY_OPS - MUTATING
    assert not unknown, f"classify these ops (read-only ones go in READ_ONLY_OPS): {unknown}"
