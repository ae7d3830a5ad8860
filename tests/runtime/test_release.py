"""The collector is kept off long-lived objects for a while after a load, then collects as usual."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from autoscaler.runtime import release


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    release.stop_freezing()
    gc.unfreeze()


def test_survivors_of_older_collections_are_frozen_until_the_deadline() -> None:
    release.freeze_survivors(3600.0)
    gc.unfreeze()
    kept = [[index] for index in range(1000)]
    gc.collect(1)
    frozen = gc.get_freeze_count()
    assert frozen >= len(kept)
    release.stop_freezing()
    more = [[index] for index in range(1000)]
    gc.collect(1)
    assert gc.get_freeze_count() == frozen  # as usual again: nothing more frozen
    assert len(more) == len(kept)


def test_a_passed_deadline_stops_freezing_at_the_next_collection() -> None:
    release.freeze_survivors(0.0)
    gc.unfreeze()
    gc.collect(1)
    assert gc.get_freeze_count() == 0
    assert all(not isinstance(callback, type(release._FREEZER)) for callback in gc.callbacks)


def test_what_a_paused_collector_saw_built_is_frozen_and_collection_resumes() -> None:
    gc.unfreeze()
    with release.collector_paused():
        assert not gc.isenabled()
        built = [[index] for index in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)
