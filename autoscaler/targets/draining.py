"""Scale-in of a served group: drain on every balancer, then hooks, then the destroy sequence.

Order: phase=draining with its start time (persisted, so a restart resumes the same drain) ->
`drain` on every balancer -> wait until every one reports no session and no queue, or until
`drain_timeout` since the drain began -> MAINT and remove (cutting what is left after a timeout)
-> terminating hooks -> ACPI shutdown -> destroy -> undefine and delete the overlay.

A draining member no longer counts toward the size the moment its drain begins, so the scale-in
returns at once and the drain runs in the background. It is never destroyed before drain_timeout
unless every balancer reported it idle, and never while a balancer cannot confirm it left: it is
then kept (draining, noted `lb_unreachable`) and asked again with back-off until one answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

import structlog

from autoscaler import errors
from autoscaler.serving import hooks
from autoscaler.targets import balancing, lifecycle
from autoscaler.targets import inventory as membership
from autoscaler.targets.registration import persist
from autoscaler.targets.state import KvmState
from autoscaler.virt import xml

log = structlog.get_logger(__name__)

Destroy = Callable[[KvmState, membership.Record, str | None], Awaitable[None]]
"""The destroy sequence proper (scalein's), run once the member left every balancer."""


async def begin(state: KvmState, record: membership.Record, pool: str, destroy: Destroy) -> None:
    """Mark the member draining (persisted with the time) and finish the rest in the background."""
    async with state.locks[record.uuid]:
        if record.owner.phase is not xml.Phase.DRAINING:
            owner = record.owner.with_phase(xml.Phase.DRAINING, since=state.stamp())
            await lifecycle.set_phase(state.gateways[record.host], record.uuid, owner)
            record.owner = owner
            state.cache.upsert(record)
    resume(state, record, pool, destroy)


def resume(state: KvmState, record: membership.Record, pool: str | None, destroy: Destroy) -> bool:
    """Run the drain of a draining member unless it runs already; False when it does."""
    served = state.served.get(record.group)
    if served is None or record.uuid in state.draining:
        return False
    state.draining.add(record.uuid)
    state.busy.add(record.uuid)
    state.spawn(_finish(state, record, served, pool, destroy), "drain")
    return True


async def _finish(
    state: KvmState, record: membership.Record, served: balancing.Served, pool: str | None, destroy: Destroy
) -> None:
    """Leave every balancer, run the terminating hooks, then destroy."""
    try:
        await _leave(state, record, served)
        await _terminate_hooks(state, record, served)
        state.busy.discard(record.uuid)
        await destroy(state, record, pool)
        log.info("member_removed", vm=record.name, group=record.group)
    except errors.TargetError as exc:  # the reconciler finds it draining and resumes
        log.warning("drain_destroy_failed", vm=record.name, error=str(exc), error_class=exc.error_class)
    finally:
        state.busy.discard(record.uuid)
        state.draining.discard(record.uuid)
        state.retries.pop(record.uuid, None)


async def _leave(state: KvmState, record: membership.Record, served: balancing.Served) -> None:
    """Drain until idle everywhere or drain_timeout, then remove; never past an unanswered balancer."""
    member = balancing.member(record, served.config)
    since = record.owner.since if record.owner.since is not None else state.clock()
    deadline = since + served.config.drain_timeout
    retry = balancing.Retry()
    while True:
        timed_out = state.clock() >= deadline
        try:
            for balancer in served.balancers:
                await balancer.drain(member)
            idle = all([await b.idle(member) for b in served.balancers])
            if idle or timed_out:
                for balancer in served.balancers:
                    await balancer.remove(member, force=not idle)
                state.observer.drain_ended(record.group, "idle" if idle else "timeout", state.clock() - since)
                balancing.mark(state.cache, record, "")
                return
            balancing.mark(state.cache, record, "draining: sessions still open")
            pause = state.settings.drain_poll
        except errors.BalancerError as exc:
            state.observer.balancer_failed(record.group, "drain", exc.error_class)
            kept = " (past drain_timeout: kept until it answers)" if timed_out else ""
            balancing.mark(state.cache, record, f"{exc.error_class}: {exc}{kept}")
            log.warning("drain_unconfirmed", vm=record.name, error=str(exc), past_timeout=timed_out)
            retry.failed(served.config.retry_interval)
            pause = retry.delay
        await asyncio.sleep(pause)


async def _terminate_hooks(state: KvmState, record: membership.Record, served: balancing.Served) -> None:
    """The terminating hooks not yet done; an abandon skips the remaining ones (both terminate)."""
    for hook in (h for h in served.config.hooks if h.event == "terminating"):
        done = f"terminating:{hook.name}"
        if done in record.owner.hooks:
            continue
        outcome = await hooks.run(hook, balancing.event("terminating", record, served.config))
        state.observer.hook_ran(record.group, "terminating", outcome.result, outcome.how)
        log.info("hook_ran", vm=record.name, hook=hook.name, result=outcome.result, how=outcome.how)
        with contextlib.suppress(errors.TargetError):
            await persist(state, record, dataclasses.replace(record.owner, hooks=(*record.owner.hooks, done)))
        if outcome.result == hooks.ABANDON:
            return
