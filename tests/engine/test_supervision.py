"""A crashed handler waits before it restarts; dropping its group or stopping never waits for that."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

from autoscaler.engine import manager
from tests import fakes
from tests.engine.conftest import World, loaded, make_policy, managing


class HeldClock(fakes.FakeClock):
    """Fake time whose sleeps longer than a second never end: a restart back-off that holds."""

    async def sleep(self, seconds: float) -> None:
        if seconds >= 1.0:
            await asyncio.Event().wait()
        await super().sleep(seconds)


@contextlib.asynccontextmanager
async def crashed_and_waiting(world: World) -> AsyncIterator[manager.GroupManager]:
    """A manager whose 'web' handler crashed once and now waits out its restart back-off."""
    world.deps = dataclasses.replace(world.deps, clock=HeldClock())
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [RuntimeError("a bug")]
    async with managing(world.deps, restart_delay=5.0) as groups:
        await fakes.eventually(lambda: groups.get("web") is not None and "web" in groups._tasks)
        groups.poke("web")
        await fakes.eventually(
            lambda: world.sample("autoscaler_handler_restarts_total", {"group": "web"}) == 1
        )
        yield groups


async def test_a_group_restored_while_its_old_handler_waits_to_restart_starts_at_once(world: World) -> None:
    async with crashed_and_waiting(world) as groups:
        groups.apply({})
        groups.apply({"web": loaded(make_policy())})
        restored = groups.get("web")
        assert restored is not None
        await fakes.eventually(lambda: "web" in groups._tasks)
        groups.poke("web")
        await fakes.eventually(lambda: restored.ticks >= 1)  # not held by the old back-off


async def test_stop_does_not_wait_the_grace_for_a_handler_waiting_to_restart(world: World) -> None:
    async with crashed_and_waiting(world) as groups, asyncio.timeout(5):
        assert await groups.stop(grace=3600.0) == 0
