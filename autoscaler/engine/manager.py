"""Owns one supervised task per group, and adds, updates and drops handlers as policies change.

A handler that crashes (a bug: nothing it expects escapes `tick`) is logged with its traceback and
restarted with backoff, counted in `handler_restarts_total`, without disturbing the other groups;
the backoff starts over after a run that lasted at least its longest delay.
Dropping a group (its policy file was removed) stops managing it; it never touches its VMs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

import structlog

from autoscaler.engine import handler
from autoscaler.policy import files

log = structlog.get_logger("autoscaler.engine")


@dataclass(frozen=True, slots=True)
class Changes:
    """What one `apply` did."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class GroupManager:
    """The set of group handlers and their tasks."""

    def __init__(self, deps: handler.Deps, *, restart_delay: float = 1.0, restart_max: float = 60.0) -> None:
        self.deps = deps
        self.restart_delay = restart_delay
        self.restart_max = restart_max
        self.handlers: dict[str, handler.GroupHandler] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._retired: dict[asyncio.Task[None], handler.GroupHandler] = {}
        """Tasks of dropped groups, finishing the action they had in flight."""
        self._running = False

    def __iter__(self) -> Iterator[handler.GroupHandler]:
        return iter(list(self.handlers.values()))

    def get(self, group: str) -> handler.GroupHandler | None:
        """The handler of `group`, if it is managed."""
        return self.handlers.get(group)

    def apply(self, groups: Mapping[str, files.LoadedGroup]) -> Changes:
        """Make the managed groups match `groups`: new handlers, new versions, dropped groups."""
        changes = self._changes(groups)
        for step in self._steps(changes, groups):
            step()
        return changes

    async def apply_gradually(self, groups: Mapping[str, files.LoadedGroup], batch: int = 100) -> Changes:
        """`apply`, yielding to the event loop every `batch` groups: adding or dropping 10,000
        groups at once would stall it for seconds."""
        changes = self._changes(groups)
        for index, step in enumerate(self._steps(changes, groups), start=1):
            step()
            if index % batch == 0:
                await asyncio.sleep(0)
        return changes

    def _changes(self, groups: Mapping[str, files.LoadedGroup]) -> Changes:
        added = [name for name in groups if name not in self.handlers]
        removed = [name for name in self.handlers if name not in groups]
        updated = [
            name
            for name, loaded in groups.items()
            if name in self.handlers and self.handlers[name].latest.revision != loaded.revision
        ]
        return Changes(tuple(added), tuple(updated), tuple(removed))

    def _steps(
        self, changes: Changes, groups: Mapping[str, files.LoadedGroup]
    ) -> Iterator[Callable[[], None]]:
        """One small step per group changed: drops first, then updates, then additions."""
        for name in changes.removed:
            yield functools.partial(self._drop, name)
        for name in changes.updated:
            yield functools.partial(self.handlers[name].update, groups[name])
        for name in changes.added:
            yield functools.partial(self._add, name, groups[name])

    def _add(self, name: str, loaded: files.LoadedGroup) -> None:
        self.handlers[name] = handler.GroupHandler(loaded, self.deps)
        if self._running:
            self._spawn(name)

    def _drop(self, name: str) -> None:
        """Stop managing `name`; a task in the middle of an action keeps going until it is over,
        one that is not acting (deciding, or waiting to restart after a crash) is cancelled."""
        dropped = self.handlers.pop(name)
        dropped.stop_acting()
        self._forget(name)
        task = self._tasks.pop(name, None)
        if task is not None and not task.done():
            self._retired[task] = dropped
            task.add_done_callback(self._retire_done)
            if not dropped.acting:
                task.cancel()
        log.info("group_unmanaged", group=name, note="its instances are left as they are")

    def _forget(self, name: str) -> None:
        self.deps.metrics.forget(name)
        self.deps.journal.forget(name)
        self.deps.store.forget(name)

    def _retire_done(self, task: asyncio.Task[None]) -> None:
        """A dropped group's last tick may have published after `_drop` forgot it: forget again."""
        dropped = self._retired.pop(task, None)
        if dropped is not None:
            self._forget(dropped.group)

    def _spawn(self, name: str) -> None:
        earlier = [task for task, dropped in self._retired.items() if dropped.group == name]
        task = asyncio.create_task(self._supervise(self.handlers[name], earlier), name=f"group:{name}")
        self._tasks[name] = task
        task.add_done_callback(
            lambda done: self._tasks.pop(name, None) if self._tasks.get(name) is done else None
        )

    async def _supervise(self, group: handler.GroupHandler, earlier: Collection[asyncio.Task[None]]) -> None:
        """Run `group` once the tasks of its dropped namesakes are over, restarting it after a crash."""
        if earlier:
            await asyncio.wait(earlier)
        delay = self.restart_delay
        while True:
            started = self.deps.clock.monotonic()
            try:
                await group.run()
                return
            except Exception:
                if self.deps.clock.monotonic() - started >= self.restart_max:
                    delay = self.restart_delay
                log.exception("handler_crashed", group=group.group, restart_in=delay)
                self.deps.metrics.handler_restarted(group.group)
            if group.stopping:
                return
            await self.deps.clock.sleep(delay)
            delay = min(self.restart_max, delay * 2)

    async def _spawn_all(self, batch: int = 100) -> None:
        """A task for every group, yielding to the event loop every `batch`: 10,000 tasks created
        at once take their first steps in one turn of the loop, which then stalls for a quarter
        of a second. Groups added meanwhile got theirs from `_add`; dropped ones need none."""
        for index, name in enumerate(list(self.handlers), start=1):
            if name in self.handlers and name not in self._tasks:
                self._spawn(name)
            if index % batch == 0:
                await asyncio.sleep(0)

    def poke(self, group: str | None = None) -> None:
        """Ask one group (or, with None, every group) to evaluate soon."""
        for name, each in list(self.handlers.items()):
            if group is None or name == group:
                each.poke()

    async def run(self) -> None:
        """Root task: run every group's handler until cancelled."""
        self._running = True
        try:
            await self._spawn_all()
            await asyncio.Event().wait()
        finally:
            self._running = False
            await self._cancel_all()

    async def stop(self, grace: float) -> int:
        """Start no new actions; give in-flight ones `grace` seconds; returns how many were abandoned."""
        for each in self.handlers.values():
            each.stop_acting()
        self._cancel_idle()
        tasks = [*self._tasks.values(), *self._retired]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        abandoned = sum(1 for each in (*self.handlers.values(), *self._retired.values()) if each.acting)
        if abandoned:
            log.warning("actions_abandoned", count=abandoned, note="the reconciler finishes or removes them")
        await self._cancel_all()
        return abandoned

    def _cancel_idle(self) -> None:
        """Cancel the tasks of handlers that are not acting: they have nothing to finish."""
        for name, task in self._tasks.items():
            if name in self.handlers and not self.handlers[name].acting:
                task.cancel()

    async def _cancel_all(self) -> None:
        tasks = [*self._tasks.values(), *self._retired]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
