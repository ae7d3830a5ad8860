"""The handler's state machine in virtual time: act, cool down, back off, pause, never act in dry run."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from autoscaler import errors, model
from autoscaler.engine import handler, limiter, memory
from tests import fakes
from tests.engine.conftest import World, loaded, make_policy

State = handler.State


async def test_scales_out_then_cools_down_then_idles(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    web = world.handler()
    entry = await web.tick()
    assert entry is not None
    assert (entry.decision.desired, entry.outcome) == (5, "acted")
    assert len(world.target.names("web")) == 5
    assert web.state is State.COOLDOWN
    world.clock.advance(61)
    await web.tick()
    assert web.state is State.IDLE


async def test_cooldown_decides_and_journals_but_does_not_act(world: World) -> None:
    world.target.boot_time = 0.0
    world.target.add("web", 2)
    world.load(50.0)
    web = world.handler()
    await web.tick()
    world.load(10.0)
    world.clock.advance(5)
    entry = await web.tick()
    assert entry is not None
    assert (entry.decision.desired, entry.outcome, entry.state) == (1, "held_cooldown", "cooldown")
    assert len(world.target.names("web")) == 5
    world.clock.advance(60)
    after = await web.tick()
    assert after is not None
    assert after.outcome == "acted"
    assert len(world.target.names("web")) == 1


async def test_temporary_error_backs_off_and_doubles(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [errors.TargetTemporary("lock timeout"), errors.TargetTemporary("again")]
    web = world.handler()
    first = await web.tick()
    assert first is not None
    assert (first.outcome, web.state) == ("backoff", State.BACKOFF)
    assert web.until == world.clock.now() + 10
    held = await web.tick()
    assert held is not None
    assert held.outcome == "held_backoff"
    world.clock.advance(10)
    await web.tick()
    assert web.until == world.clock.now() + 20
    world.clock.advance(20)
    last = await web.tick()
    assert last is not None
    assert last.outcome == "acted"
    assert (
        world.sample(
            "autoscaler_scale_operations_total", {"group": "web", "direction": "up", "result": "error"}
        )
        == 2
    )


async def test_permanent_error_disables_until_a_new_policy(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [errors.TargetPermanent("golden image missing")]
    web = world.handler()
    await web.tick()
    assert web.state is State.DISABLED
    assert await web.tick() is None
    assert world.sample("autoscaler_evaluations_total", {"group": "web", "result": "skipped"}) == 1
    web.update(loaded(make_policy(max=19)))
    entry = await web.tick()
    assert entry is not None
    assert entry.outcome == "acted"


async def test_an_operator_resume_takes_a_disabled_group_back_to_acting(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [errors.TargetPermanent("golden image missing")]
    web = world.handler()
    first = await web.tick()
    assert first is not None
    assert (first.outcome, web.state, web.reason) == ("disabled", State.DISABLED, "golden image missing")
    world.clock.advance(3600)
    assert await web.tick() is None
    assert (web.state, len(world.target.calls)) == (State.DISABLED, 1)
    web.resume()
    assert web.state is State.IDLE
    entry = await web.tick()
    assert entry is not None
    assert entry.outcome == "acted"
    assert len(world.target.calls) == 2
    assert len(world.target.names("web")) == 5


async def test_backoff_doubles_from_ten_seconds_to_five_minutes_and_a_success_resets_it(
    world: World,
) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [errors.TargetTemporary(f"lock timeout {n}") for n in range(7)]
    web = world.handler()
    waits: list[float] = []
    for _ in range(7):
        entry = await web.tick()
        assert entry is not None
        assert (entry.outcome, web.state) == ("backoff", State.BACKOFF)
        assert web.until is not None
        waits.append(web.until - world.clock.now())
        world.clock.advance(waits[-1])
    assert waits == pytest.approx([10, 20, 40, 80, 160, 300, 300])
    success = await web.tick()
    assert success is not None
    assert success.outcome == "acted"
    world.clock.advance(61)
    world.load(90.0)
    world.target.faults = [errors.TargetTemporary("lock timeout again")]
    after = await web.tick()
    assert after is not None
    assert (after.outcome, web.state) == ("backoff", State.BACKOFF)
    assert web.until == pytest.approx(world.clock.now() + 10)


async def test_capacity_limited_is_recorded_not_an_error_state(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [errors.CapacityLimited("no host has 512 MiB free")]
    web = world.handler()
    entry = await web.tick()
    assert entry is not None
    assert (entry.outcome, web.state) == ("capacity_limited", State.IDLE)


async def test_partial_success_cools_down_for_what_succeeded(world: World) -> None:
    world.target.add("web", 2)
    world.load(60.0)
    world.target.fail_clones = 1
    web = world.handler()
    entry = await web.tick()
    assert entry is not None
    assert entry.outcome == "partial"
    assert "injected" in entry.detail
    assert web.state is State.COOLDOWN
    assert [c.delta for c in web.memory.changes] == [3]
    labels = {"group": "web", "direction": "up"}
    assert world.sample("autoscaler_scale_instances_total", {**labels, "result": "failed"}) == 1


async def test_operator_pause_holds_and_resume_acts(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    web = world.handler()
    web.pause("maintenance")
    entry = await web.tick()
    assert entry is not None
    assert (entry.outcome, entry.state) == ("held_paused", "paused")
    assert world.target.calls == []
    web.resume()
    resumed = await web.tick()
    assert resumed is not None
    assert resumed.outcome == "acted"


async def test_dry_run_and_policy_pause_never_act(world: World) -> None:
    world.target.add("web", 2)
    world.load(90.0)
    for policy, outcome in ((make_policy(dry_run=True), "dry_run"), (make_policy(paused=True), "paused")):
        entry = await world.handler(policy).tick()
        assert entry is not None
        assert (entry.decision.desired, entry.outcome) == (9, outcome)
    assert world.target.calls == []


async def test_skips_until_the_inventory_is_reconciled(world: World) -> None:
    world.target.reconciled = False
    world.load(50.0)
    web = world.handler()
    assert await web.tick() is None
    assert web.state is State.STARTING
    assert world.sample("autoscaler_evaluations_total", {"group": "web", "result": "skipped"}) == 1
    world.target.reconciled = True
    assert await web.tick() is not None


async def test_restart_starts_in_cooldown_after_a_recent_change(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    await world.handler().tick()
    world.clock.advance(20)
    again = world.handler()
    entry = await again.tick()
    assert entry is not None
    assert again.state is State.COOLDOWN
    assert again.memory.last_up_at == world.clock.now() - 20


async def test_memory_and_pause_survive_a_restart(world: World) -> None:
    world.target.add("web", 2, age=7200)
    world.load(50.0)
    web = world.handler()
    await web.tick()
    paused_at = world.clock.now()
    web.pause("change freeze")
    await web.persist()
    saved = await world.deps.store.load("web")
    assert saved is not None
    assert saved.memory == web.memory
    assert (saved.paused, saved.paused_at) == ("change freeze", paused_at)
    world.clock.advance(3600)
    again = world.handler()
    entry = await again.tick()
    assert entry is not None
    assert (entry.state, again.paused) == ("paused", "change freeze")
    assert again.status()["paused_at"] == paused_at  # when, not when the daemon restarted
    again.resume()
    assert again.status()["paused_at"] is None


async def test_slot_timeout_returns_to_idle(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    tight = limiter.Limiter(slots=1, timeout=0.01)
    web = handler.GroupHandler(loaded(make_policy()), dataclasses.replace(world.deps, limiter=tight))
    async with tight.slot():
        entry = await web.tick()
    assert entry is not None
    assert (entry.outcome, web.state) == ("slot_timeout", State.IDLE)


async def test_in_flight_action_finishes_while_paused(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.gate = asyncio.Event()
    web = world.handler()
    tick = asyncio.create_task(web.tick())
    await fakes.eventually(lambda: web.acting)
    web.pause("now")
    assert web.shown_state in (State.SCALING, State.WAITING_SLOT)
    world.target.gate.set()
    entry = await tick
    assert entry is not None
    assert entry.outcome == "acted"
    assert web.shown_state is State.PAUSED


async def test_group_state_and_decisions_are_exported(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    web = world.handler()
    await web.tick()
    assert world.sample("autoscaler_group_state", {"group": "web", "state": "cooldown"}) == 1
    assert world.sample("autoscaler_group_desired_instances", {"group": "web"}) == 5
    assert world.sample("autoscaler_evaluations_total", {"group": "web", "result": "ok"}) == 1
    status = web.status()
    assert status["last_decision"]["desired"] == 5
    assert len(status["members"]) == 5


def test_states_match_the_exported_names() -> None:
    from autoscaler.telemetry import groups

    assert tuple(s.value for s in State) == groups.GROUP_STATES


async def test_failed_members_are_replaced_new_first_ten_percent_at_a_time(world: World) -> None:
    names = world.target.add("web", 20)
    for name in names[:3]:
        world.target.fail("web", name)
    world.load(200.0)
    web = world.handler()
    entry = await web.tick()
    assert entry is not None
    assert entry.outcome == "replaced"
    assert [op for op, _g, _n in world.target.calls] == ["scale_out", "scale_in"]
    assert world.target.calls[0][2] == 2
    assert not set(names[:2]) & set(world.target.names("web"))
    assert names[2] in world.target.names("web")
    assert len(world.target.names("web")) == 20
    assert world.sample("autoscaler_replacements_total", {"group": "web", "reason": "failed"}) == 2
    assert web.status()["replacements"][0]["removed"] == names[:2]


async def test_scale_in_removes_the_newest_members(world: World) -> None:
    oldest_first = [world.target.add("web", 1, age=age)[0] for age in (6000, 5000, 4000, 3000, 2000, 1000)]
    world.load(20.0)
    web = world.handler()
    entry = await web.tick()
    assert entry is not None
    assert (entry.decision.desired, entry.decision.direction) == (2, model.Direction.DOWN)
    assert entry.decision.victims == tuple(reversed(oldest_first[2:]))
    assert world.target.names("web") == oldest_first[:2]
    assert world.target.calls == [("scale_in", "web", 4)]


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (None, "replaced"),
        (errors.TargetTemporary("lock timeout"), "backoff"),
        (errors.CapacityLimited("no host has 512 MiB free"), "capacity_limited"),
        (limiter.SlotTimeout, "slot_timeout"),
    ],
    ids=["done", "temporary", "capacity", "slot_timeout"],
)
async def test_replacing_a_member_in_cooldown_keeps_the_cooldown(
    world: World, fault: Exception | type[limiter.SlotTimeout] | None, outcome: str
) -> None:
    world.target.boot_time = 0.0
    world.target.add("web", 10)
    world.load(120.0)
    tight = limiter.Limiter(slots=1, timeout=0.01)
    web = handler.GroupHandler(loaded(make_policy()), dataclasses.replace(world.deps, limiter=tight))
    await web.tick()
    cooldown = (web.state, web.until, web.reason)
    assert cooldown[0] is State.COOLDOWN
    world.target.fail("web", world.target.names("web")[0])
    world.clock.advance(5)
    if isinstance(fault, Exception):
        world.target.faults = [fault]
    async with contextlib.AsyncExitStack() as holding:
        if fault is limiter.SlotTimeout:
            await holding.enter_async_context(tight.slot())
        entry = await web.tick()
    assert entry is not None
    assert entry.outcome == outcome
    assert (web.state, web.until, web.reason) == cooldown
    world.clock.advance(60)
    world.load(300.0)
    after = await web.tick()
    assert after is not None
    assert after.outcome == "acted"
    assert web.state is State.COOLDOWN
    assert web.until == world.clock.now() + 60


async def test_a_crash_in_the_action_backs_off_instead_of_staying_scaling(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [RuntimeError("a bug")]
    web = world.handler()
    with pytest.raises(RuntimeError, match="a bug"):
        await web.tick()
    assert (web.state, web.until, web.acting) == (State.BACKOFF, world.clock.now() + 10, False)
    assert web.reason == "bug: RuntimeError: a bug"
    held = await web.tick()
    assert held is not None
    assert held.outcome == "held_backoff"
    assert len(world.target.calls) == 1
    world.clock.advance(10)
    after = await web.tick()
    assert after is not None
    assert after.outcome == "acted"


@pytest.mark.parametrize("held", ["stopping", "paused"])
async def test_an_action_waiting_for_a_slot_does_not_start_after_stop_or_pause(
    world: World, held: str
) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    tight = limiter.Limiter(slots=1, timeout=5.0)
    web = handler.GroupHandler(loaded(make_policy()), dataclasses.replace(world.deps, limiter=tight))
    async with tight.slot():
        tick = asyncio.create_task(web.tick())
        await fakes.eventually(lambda: web.state is State.WAITING_SLOT)
        if held == "stopping":
            web.stop_acting()
        else:
            web.pause("maintenance")
    entry = await tick
    assert entry is not None
    assert entry.outcome == f"held_{held}"
    assert world.target.calls == []
    assert web.state is State.IDLE


async def test_a_failed_memory_write_is_logged_once_and_counted_without_failing_the_tick(
    world: World, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    deps = dataclasses.replace(world.deps, store=memory.MemoryStore(blocker))
    world.target.add("web", 2)
    world.load(50.0)
    web = handler.GroupHandler(loaded(make_policy()), deps)
    with capture_logs() as logs:
        first = await web.tick()
        second = await web.tick()
    assert first is not None
    assert second is not None
    assert (first.outcome, second.outcome) == ("acted", "none")
    assert len(world.target.names("web")) == 5
    assert [e["kind"] for e in logs if e["event"] == "failure_began"] == ["state_write"]
    assert world.sample("autoscaler_evaluations_total", {"group": "web", "result": "error"}) == 2
    blocker.unlink()
    with capture_logs() as logs:
        assert await web.tick() is not None
    assert [e["kind"] for e in logs if e["event"] == "failure_recovered"] == ["state_write"]
    assert world.sample("autoscaler_evaluations_total", {"group": "web", "result": "ok"}) == 1
    saved = await deps.store.load("web")
    assert saved is not None
    assert saved.memory.last_up_at == web.memory.last_up_at


async def test_backoff_lasts_its_time_on_the_monotonic_clock_across_wall_clock_steps(world: World) -> None:
    world.target.add("web", 2)
    world.load(50.0)
    world.target.faults = [errors.TargetTemporary("lock timeout")]
    web = world.handler()
    first = await web.tick()
    assert first is not None
    assert first.outcome == "backoff"
    world.clock.wall += 3600  # NTP steps the wall clock forward an hour
    assert web.until == world.clock.now() + 10
    held = await web.tick()
    assert held is not None
    assert held.outcome == "held_backoff"
    world.clock.wall -= 7200  # ... and back, an hour before where it started
    world.clock.advance(10)
    after = await web.tick()
    assert after is not None
    assert after.outcome == "acted"


async def test_a_failing_source_is_logged_once_when_it_begins_and_once_when_it_ends(world: World) -> None:
    world.target.add("web", 2)
    world.load(20.0)
    web = world.handler()
    with capture_logs() as logs:
        await web.tick()
        world.source.errors["load"] = errors.SourceUnavailable("connection refused")
        for _ in range(3):
            await web.tick()
        del world.source.errors["load"]
        await web.tick()
        await web.tick()
    edges = [
        (e["event"], e["check"], e["error_class"]) for e in logs if e["event"].startswith("check_source")
    ]
    assert edges == [
        ("check_source_failing", "load", "unavailable"),
        ("check_source_recovered", "load", "unavailable"),
    ]
    assert all(e["log_level"] == "info" for e in logs if e["event"].startswith("check_source"))
