"""Group memory round-trips through its JSON file; a damaged file reads as no memory."""

from __future__ import annotations

import json
from pathlib import Path

from autoscaler import model
from autoscaler.engine import memory


async def test_round_trip(tmp_path: Path) -> None:
    store = memory.MemoryStore(tmp_path)
    saved = memory.Saved(
        model.GroupMemory(
            ((1.0, 3), (2.0, 4)), (model.Change(2.0, 1),), last_up_at=2.0, last_fresh=(("cpu", 2.0, 4),)
        ),
        paused="freeze",
        paused_at=1.8e9,
    )
    await store.save("web", saved)
    assert await store.load("web") == saved
    assert not list(store.directory.glob(".*tmp"))


async def test_a_pause_saved_before_pauses_were_dated_reads_without_a_time(tmp_path: Path) -> None:
    store = memory.MemoryStore(tmp_path)
    store.directory.mkdir(parents=True)
    data = memory.encode(memory.Saved(model.GroupMemory(), paused="freeze"))
    del data["paused_at"]
    store.path("web").write_text(json.dumps(data))
    assert await store.load("web") == memory.Saved(model.GroupMemory(), paused="freeze")


async def test_missing_or_damaged_files_read_as_none(tmp_path: Path) -> None:
    store = memory.MemoryStore(tmp_path)
    assert await store.load("web") is None
    store.directory.mkdir(parents=True)
    store.path("web").write_text("{not json")
    assert await store.load("web") is None
    store.path("web").write_text('{"format": 99}')
    assert await store.load("web") is None


async def test_changes_are_written_at_once_history_only_now_and_then(tmp_path: Path) -> None:
    store = memory.MemoryStore(tmp_path, refresh_every=3)
    base = model.GroupMemory(((1.0, 3),))
    await store.save("web", memory.Saved(base))
    moved = model.GroupMemory(((1.0, 3), (2.0, 4)))
    await store.save("web", memory.Saved(moved))
    assert await store.load("web") == memory.Saved(base)  # only the history moved: not yet written
    changed = moved.record_change(3.0, 1)
    await store.save("web", memory.Saved(changed))
    assert await store.load("web") == memory.Saved(changed)  # a change is written at once
    paused = memory.Saved(changed, paused="maintenance")
    await store.save("web", paused)
    assert await store.load("web") == paused
    later = memory.Saved(
        model.GroupMemory((*changed.recommendations, (4.0, 5)), changed.changes, 3.0), "maintenance"
    )
    for _ in range(3):
        await store.save("web", later)
    assert await store.load("web") == later  # the history is refreshed every `refresh_every` saves


async def test_a_restart_does_not_rewrite_what_it_read(tmp_path: Path) -> None:
    saved = memory.Saved(model.GroupMemory(((1.0, 3),)).record_change(1.0, 1), paused="freeze")
    await memory.MemoryStore(tmp_path).save("web", saved)
    restarted = memory.MemoryStore(tmp_path)
    assert await restarted.load("web") == saved
    restarted.path("web").unlink()
    moved = memory.Saved(model.GroupMemory(((1.0, 3), (2.0, 3)), saved.memory.changes, 1.0), "freeze")
    await restarted.save("web", moved)
    assert not restarted.path("web").exists(), "unchanged since it was read: no write"
    resumed = memory.Saved(moved.memory)
    await restarted.save("web", resumed)
    assert await restarted.load("web") == resumed
