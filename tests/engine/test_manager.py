"""The manager: handlers follow the policy set, a crashing handler is restarted, shutdown has a grace."""

from __future__ import annotations

import asyncio
import dataclasses
import types

from structlog.testing import capture_logs

from autoscaler import model
from autoscaler.engine import handler, manager
from tests import fakes
from tests.engine.conftest import World, loaded, make_policy, managing


async def test_apply_adds_updates_and_drops_without_touching_instances(world: World) -> None:
    groups = manager.GroupManager(world.deps)
    web = loaded(make_policy())
    assert groups.apply({"web": web}) == manager.Changes(added=("web",))
    newer = loaded(make_policy(max=12))
    assert groups.apply({"web": newer}) == manager.Changes(updated=("web",))
    handler = groups.get("web")
    assert handler is not None
    assert handler.latest is newer
    world.target.add("web", 3)
    assert groups.apply({}) == manager.Changes(removed=("web",))
    assert groups.get("web") is None
    assert len(world.target.names("web")) == 3


async def test_a_crashing_handler_is_restarted_and_counted(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [RuntimeError("a bug")]
    async with managing(world.deps, restart_delay=0.01) as groups:
        await fakes.eventually(lambda: groups.get("web") is not None)
        groups.poke("web")
        restarts = {"group": "web"}
        await fakes.eventually(lambda: world.sample("autoscaler_handler_restarts_total", restarts) == 1)
        world.clock.advance(10)  # the crash backed off, as an action whose effect is unknown does
        groups.poke("web")
        await fakes.eventually(lambda: len(world.target.names("web")) == 5)


async def test_stop_waits_for_in_flight_actions_up_to_the_grace(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.gate = asyncio.Event()
    async with managing(world.deps) as groups:
        await fakes.eventually(lambda: "web" in groups._tasks)
        groups.poke()
        await fakes.eventually(lambda: world.target.calls)
        assert await groups.stop(grace=0.05) == 1
        assert len(world.target.names("web")) == 2


async def test_stop_lets_a_quick_action_finish(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.latency = 0.05
    async with managing(world.deps) as groups:
        await fakes.eventually(lambda: "web" in groups._tasks)
        groups.poke()
        await fakes.eventually(lambda: world.target.calls)
        assert await groups.stop(grace=5.0) == 0
        assert len(world.target.names("web")) == 5


async def test_an_edit_reverted_before_the_next_tick_is_never_applied(world: World) -> None:
    world.target.add("web", 2)
    world.load(20.0)
    groups = manager.GroupManager(world.deps)
    first, edited = loaded(make_policy(max=20)), loaded(make_policy(max=3))
    groups.apply({"web": first})
    web = groups.get("web")
    assert web is not None
    await web.tick()
    assert groups.apply({"web": edited}) == manager.Changes(updated=("web",))
    assert groups.apply({"web": first}) == manager.Changes(updated=("web",))
    assert web.latest is first
    await web.tick()
    assert web.policy.max == 20
    assert groups.apply({"web": first}) == manager.Changes()


def _group_task_running(name: str) -> bool:
    return any(task.get_name() == f"group:{name}" and not task.done() for task in asyncio.all_tasks())


def _awaiting(task: asyncio.Task[None]) -> list[str]:
    """The names of the coroutines `task` is suspended in, outermost first."""
    names: list[str] = []
    awaited: object = task.get_coro()
    while isinstance(awaited, types.CoroutineType):
        names.append(awaited.cr_code.co_name)
        awaited = awaited.cr_await
    return names


async def test_a_group_dropped_and_restored_mid_action_acts_once(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.gate = asyncio.Event()
    async with managing(world.deps) as groups:
        groups.poke()
        await fakes.eventually(lambda: world.target.calls)
        groups.apply({})
        groups.apply({"web": loaded(make_policy())})
        groups.poke("web")
        restored = groups.get("web")
        assert restored is not None
        # The restored group's task parks until its dropped namesake's action is over, poke or not:
        # wait until it is suspended there (not in its own run or tick), then nothing else may act.
        await fakes.eventually(lambda: _awaiting(groups._tasks["web"])[:2] == ["_supervise", "wait"])
        assert (len(world.target.calls), restored.ticks) == (1, 0)
        world.target.gate.set()
        await fakes.eventually(lambda: restored.ticks == 1 and restored.status()["last_decision"] is not None)
        assert restored.status()["last_decision"]["outcome"] == "none"
        assert restored.state is handler.State.COOLDOWN
        assert [op for op, _g, _n in world.target.calls] == ["scale_out"]
        assert len(world.target.names("web")) == 5


async def test_a_group_dropped_mid_action_is_not_shown_after_it(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.gate = asyncio.Event()
    async with managing(world.deps) as groups:
        groups.poke()
        await fakes.eventually(lambda: world.target.calls)
        groups.apply({})
        assert _group_task_running("web")
        world.target.gate.set()
        await fakes.eventually(lambda: not _group_task_running("web"))
        assert len(world.target.names("web")) == 5
        for state in ("cooldown", "scaling"):
            assert world.sample("autoscaler_group_state", {"group": "web", "state": state}) is None
        assert world.deps.journal.last("web") is None


@dataclasses.dataclass
class _BrokenInventory(fakes.FakeTarget):
    """A target whose inventory raises a bug's exception while `broken`."""

    broken: bool = True

    async def inventory(self, group: str) -> model.GroupInventory:
        if self.broken:
            raise RuntimeError("a bug")
        return await super().inventory(group)


async def test_the_restart_delay_starts_over_after_a_long_healthy_run(world: World) -> None:
    target = _BrokenInventory(world.clock)
    deps = dataclasses.replace(world.deps, target=target)

    def evaluations(result: str) -> float | None:
        return world.sample("autoscaler_evaluations_total", {"group": "web", "result": result})

    def restarts() -> float | None:
        return world.sample("autoscaler_handler_restarts_total", {"group": "web"})

    with capture_logs() as logs:
        async with managing(deps, restart_delay=1.0, restart_max=8.0) as groups:
            for count in range(1, 6):
                groups.poke("web")
                await fakes.eventually(lambda: restarts() == count)  # noqa: B023
            target.broken = False
            groups.poke("web")
            await fakes.eventually(lambda: evaluations("ok") == 1)
            world.clock.advance(8)
            target.broken = True
            groups.poke("web")
            await fakes.eventually(lambda: restarts() == 6)
    delays = [e["restart_in"] for e in logs if e["event"] == "handler_crashed"]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 1.0]


async def test_a_large_set_gets_its_tasks_in_slices_then_all(world: World) -> None:
    groups = manager.GroupManager(world.deps)
    names = [f"g{index:03d}" for index in range(250)]
    groups.apply({name: loaded(make_policy(group=name)) for name in names})
    runner = asyncio.create_task(groups.run())
    await asyncio.sleep(0)  # run() starts and creates the first slice
    assert 0 < len(groups._tasks) < len(names), "all tasks at once: one turn of the loop runs them all"
    groups.apply({name: loaded(make_policy(group=name)) for name in names[1:]})
    await fakes.eventually(lambda: len(groups._tasks) == len(names) - 1)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
