"""The engine under a Leadership that is not its own: a standby decides and journals but never
acts, and a daemon that becomes the acting one re-reads the group memory its predecessor saved."""

from __future__ import annotations

import dataclasses

from autoscaler import model
from autoscaler.engine import memory
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
