"""The engine under a Leadership that is not its own: a standby decides and journals but never
acts, and a daemon that becomes the acting one re-reads the group memory its predecessor saved."""

from __future__ import annotations

import dataclasses

from autoscaler import model
from autoscaler.engine import memory
from autoscaler.engine.deps import SharedPause
from tests.engine.conftest import World


@dataclasses.dataclass
class Scripted:
    """A Leadership whose answers the test sets (a fake at our own seam)."""

    held: str | None = "standby"
    current_term: int = 0

    def hold(self) -> str | None:
        return self.held

    def term(self) -> int:
        return self.current_term


async def test_a_standby_decides_and_journals_but_never_acts(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    standby = Scripted()
    world.deps = dataclasses.replace(world.deps, leadership=standby)
    web = world.handler()
    entry = await web.tick()
    assert entry is not None
    assert (entry.decision.desired, entry.outcome) == (5, "held_standby")
    assert len(world.target.names("web")) == 2
    standby.held = "etcd_unavailable"
    entry = await web.tick()
    assert entry is not None
    assert entry.outcome == "held_etcd_unavailable"
    assert len(world.target.names("web")) == 2


async def test_a_new_term_reads_the_memory_the_previous_leader_saved(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    leadership = Scripted()
    world.deps = dataclasses.replace(world.deps, leadership=leadership)
    web = world.handler()
    await web.tick()  # as a standby: its own memory, nothing from the store yet
    now = world.clock.now()
    predecessor = model.GroupMemory(changes=(model.Change(now, 3),), last_up_at=now)
    await world.deps.store.save("web", memory.Saved(predecessor))
    leadership.held, leadership.current_term = None, 1
    entry = await web.tick()
    assert entry is not None
    assert web.memory.last_up_at == now
    assert entry.decision.desired == 2, "the predecessor's scale-out must hold this one in cooldown"
    assert "cooldown" in {stage.name for stage in entry.decision.trail}
    assert len(world.target.names("web")) == 2


class Unreadable:
    """A store that cannot be read now (etcd without quorum), then can."""

    def __init__(self, inner: memory.GroupStore) -> None:
        self.inner = inner
        self.broken = True

    def path(self, group: str) -> str:
        return f"etcd:/test/{group}"

    async def load(self, group: str) -> memory.Saved | None:
        if self.broken:
            raise OSError("etcd: no member answered")
        return await self.inner.load(group)

    async def save(self, group: str, saved: memory.Saved) -> None:
        await self.inner.save(group, saved)


async def test_a_group_whose_memory_cannot_be_read_decides_but_does_not_act(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    store = Unreadable(world.deps.store)
    world.deps = dataclasses.replace(world.deps, store=store, leadership=Scripted(held=None))
    web = world.handler()
    entry = await web.tick()
    assert entry is not None
    assert entry.outcome == "held_memory_unread"
    assert len(world.target.names("web")) == 2
    store.broken = False
    entry = await web.tick()
    assert entry is not None
    assert entry.outcome == "acted"


@dataclasses.dataclass
class Board:
    """A PauseBoard the test reads and writes (another daemon's writes are `stored` directly)."""

    reason: str | None = None
    revision: int = 0
    readable: bool = True

    async def read(self, group: str) -> SharedPause:
        if not self.readable:
            raise OSError("etcd: no member answered")
        return SharedPause(self.reason, self.revision)

    async def write(self, group: str, reason: str | None) -> int:
        if not self.readable:
            raise OSError("etcd: no member answered")
        self.stored(reason)
        return self.revision

    def stored(self, reason: str | None) -> None:
        self.reason, self.revision = reason, self.revision + 1


async def test_a_pause_stored_by_another_daemon_holds_the_acting_one_until_resumed(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    board = Board()
    world.deps = dataclasses.replace(world.deps, pauses=board)
    web = world.handler()
    board.stored("maintenance")  # sent to a standby
    entry = await web.tick()
    assert entry is not None
    assert (entry.decision.desired, entry.outcome) == (5, "held_paused")
    assert web.paused == "maintenance"
    assert len(world.target.names("web")) == 2
    board.stored(None)  # resumed on another daemon
    entry = await web.tick()
    assert entry is not None
    assert web.paused is None
    assert len(world.target.names("web")) == 5


async def test_a_pause_sent_here_is_stored_for_the_others_and_not_undone_by_the_memory(world: World) -> None:
    board = Board()
    leadership = Scripted()
    world.deps = dataclasses.replace(world.deps, pauses=board, leadership=leadership)
    web = world.handler()
    web.pause("ops")
    assert await web.share_pause() is None
    assert (board.reason, board.revision) == ("ops", 1)
    await world.deps.store.save("web", memory.Saved(model.GroupMemory(), None))  # an older leader's
    leadership.held, leadership.current_term = None, 1
    await web.tick()
    assert web.paused == "ops", "the memory the predecessor saved must not lift a shared pause"


async def test_an_unreadable_pause_holds_actions(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.deps = dataclasses.replace(world.deps, pauses=Board(readable=False))
    web = world.handler()
    entry = await web.tick()
    assert entry is not None
    assert entry.outcome == "held_memory_unread"
    assert len(world.target.names("web")) == 2


async def test_a_pause_etcd_cannot_store_is_said_and_holds_here(world: World) -> None:
    world.deps = dataclasses.replace(world.deps, pauses=Board(readable=False))
    web = world.handler()
    web.pause("ops")
    assert await web.share_pause() == "etcd: no member answered"
    assert web.paused == "ops"
