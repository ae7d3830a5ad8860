"""The libvirt CPU source: empty until a rate is known, then the mean over ready members; and how two
CPU-time readings, at hand-given times, become a load."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from autoscaler import errors
from autoscaler.sources import domstats
from autoscaler.targets import NullObserver, kvm, maintenance
from autoscaler.targets.inventory import Record
from autoscaler.targets.state import KvmState
from autoscaler.virt import xml
from tests.targets.hosts import eventually, fast_settings, host_uri, web_policy


async def test_cpu_is_empty_first_then_a_utilisation(tmp_path: pathlib.Path) -> None:
    target = kvm.KvmTarget(
        host_uri(tmp_path), settings=fast_settings(stats_interval=3600.0), policies=[web_policy()]
    )
    await target.start()
    try:
        source = domstats.DomainStatsSource(target)
        assert await source.query("web:cpu", 0.0) == ()
        await target.scale_out(web_policy(), 2)
        await eventually(lambda: all(r.owner.ready for r in target._cache.group("web")))
        # A member's first reading gives no rate (the background loop may have taken it already),
        # so at most two queries are needed before a utilisation appears.
        samples = await source.query("web", 0.0) or await source.query("web:cpu", 0.0)
        assert len(samples) == 1
        assert 0.0 <= samples[0].value <= 1.0
    finally:
        await target.close()


async def test_unknown_metric_is_a_query_error(tmp_path: pathlib.Path) -> None:
    target = kvm.KvmTarget(host_uri(tmp_path), settings=fast_settings())
    with pytest.raises(errors.QueryError):
        await domstats.DomainStatsSource(target).query("web:disk", 0.0)


async def test_readings_closer_than_the_window_give_no_load(tmp_path: pathlib.Path) -> None:
    # A window no test run can reach: however long the round trips take, every reading is too soon.
    settings = fast_settings(stats_interval=3600.0, min_cpu_window=3600.0)
    target = kvm.KvmTarget(host_uri(tmp_path), settings=settings, policies=[web_policy()])
    await target.start()
    try:
        await target.scale_out(web_policy(), 1)
        await eventually(lambda: all(r.owner.ready for r in target._cache.group("web")))
        assert await target.refresh_load("web") is None  # the baseline
        assert await target.refresh_load("web") is None  # too soon: no rate from that
        [member] = target._cache.members("web")
        assert (member.load, member.load_at) == (None, None)
    finally:
        await target.close()


UUID = "0c0c0c0c-0000-4000-8000-000000000001"
COMPUTED_AT = 1_767_600_000.0


@pytest.fixture
def state() -> Iterator[KvmState]:
    """A KVM state with one running member on host 'h', a 5 s window and a fixed clock."""
    settings = kvm.KvmSettings(min_cpu_window=5.0)
    made = KvmState(["h"], settings, NullObserver(), lambda: COMPUTED_AT, lambda: UUID)
    owner = xml.Ownership("web", "golden-web.qcow2", "rev", 100.0, xml.Phase.ACTIVE)
    made.cache.upsert(Record(UUID, "as-web-0c0c0c0c", "h", owner, "running", 512 << 20))
    yield made
    made.executor.shutdown(wait=True)


def _read(state: KvmState, cpu_seconds: float, vcpus: int, at: float) -> Record:
    """Apply one reading (CPU seconds used so far, taken at monotonic `at`) and return the member."""
    maintenance._apply_readings(state, "h", {UUID: (int(cpu_seconds * 1e9), vcpus, at)})
    record = state.cache.get("h", UUID)
    assert record is not None
    return record


def test_a_load_is_cpu_time_over_elapsed_time_and_vcpus(state: KvmState) -> None:
    assert _read(state, 100.0, 2, at=50.0).load is None  # the baseline
    member = _read(state, 110.0, 2, at=60.0)  # 10 s of CPU over 10 s on 2 vCPUs
    assert (member.load, member.load_at) == (pytest.approx(0.5), COMPUTED_AT)
    assert _read(state, 140.0, 2, at=80.0).load == pytest.approx(0.75)  # from the new baseline


def test_a_reading_within_the_window_keeps_the_baseline_and_the_last_load(state: KvmState) -> None:
    _read(state, 100.0, 1, at=50.0)
    assert _read(state, 101.0, 1, at=54.9).load is None  # 4.9 s < 5 s: dropped
    member = _read(state, 103.0, 1, at=56.0)  # over 6 s from the first reading, not 1.1 s
    assert member.load == pytest.approx(0.5)
    assert _read(state, 104.0, 1, at=57.0).load == pytest.approx(0.5)  # too soon again: kept
    assert state.cpu[UUID] == (int(103.0 * 1e9), 1, 56.0)


@pytest.mark.parametrize(
    ("cpu_seconds", "at", "load"),
    [(100.0, 60.0, 0.0), (200.0, 60.0, 1.0), (90.0, 60.0, 0.0)],
    ids=["idle", "capped-at-one", "counter-reset"],
)
def test_a_load_stays_between_zero_and_one(
    state: KvmState, cpu_seconds: float, at: float, load: float
) -> None:
    _read(state, 100.0, 1, at=50.0)
    assert _read(state, cpu_seconds, 1, at=at).load == load


def test_a_clock_going_backwards_gives_no_load(state: KvmState) -> None:
    state.settings = kvm.KvmSettings(min_cpu_window=0.0)
    _read(state, 100.0, 1, at=50.0)
    assert _read(state, 101.0, 1, at=50.0).load is None
    assert _read(state, 101.0, 1, at=40.0).load is None
    assert state.cpu[UUID][2] == 50.0


def test_a_reading_of_an_unknown_domain_only_sets_its_baseline(state: KvmState) -> None:
    stranger = "0c0c0c0c-0000-4000-8000-000000000002"
    maintenance._apply_readings(state, "h", {stranger: (5, 1, 50.0)})
    assert state.cpu[stranger] == (5, 1, 50.0)
    assert state.cache.get("h", stranger) is None
