"""Policy reloads that never make things worse: a bad file keeps its last good version.

`merge` is the pure rule (a rejected file keeps the groups it had; a removed file drops its groups;
a good file replaces them). `Watcher` applies it on request (SIGHUP, POST /reload) and on a cheap
poll of the files' mtimes and contents, so an edit takes effect without a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from autoscaler.engine import Clock
from autoscaler.policy import files, locate, safeyaml
from autoscaler.telemetry import metrics as telemetry

log = structlog.get_logger("autoscaler.policy")
Fingerprint = tuple[tuple[str, int, str], ...]


def fingerprint(paths: Sequence[str | Path], max_bytes: int = 4 * 1024 * 1024) -> Fingerprint:
    """(file, mtime_ns, size and content hash) of every policy file: changes whenever a file is
    edited (even to the same size within one timestamp tick), added or removed. Only the first
    `max_bytes` + 1 are hashed: a larger file is rejected whatever the rest holds."""
    found = []
    for path in files.policy_files(paths):
        try:
            stat = path.stat()
            with path.open("rb") as handle:
                digest = hashlib.sha256(handle.read(max_bytes + 1)).hexdigest()
        except OSError:
            continue
        found.append((str(path), stat.st_mtime_ns, f"{stat.st_size}:{digest}"))
    return tuple(found)


def load(
    paths: Sequence[str | Path],
    previous: Mapping[str, files.LoadedGroup],
    sources: Sequence[str] | None = None,
    limits: safeyaml.Limits | None = None,
) -> files.LoadResult:
    """Every policy file, where a group stays with the file that defined it before this load.

    `files.load_paths` keeps the first definition in file order, so a new file sorting first (a copy
    of `web.yaml` as `00-canary.yaml`) would take over the live group. Here a group whose file is
    still there is reserved for it (even when that file is now rejected and keeps its last good
    version), and any other file defining it is the one rejected. With `sources` (the configured
    metric source names), a file whose groups name any other source is rejected too. A file
    whose groups would take the total beyond `limits.groups` is rejected.
    """
    limits = limits or safeyaml.Limits()
    found = {str(path): files.load_paths([path], sources, limits) for path in files.policy_files(paths)}
    reserved = {
        name: found[g.file].groups.get(name, g)
        for name, g in previous.items()
        if g.file in found and (name in found[g.file].groups or not found[g.file].ok)
    }
    groups: dict[str, files.LoadedGroup] = {}
    problems: dict[str, list[locate.Problem]] = {}
    for file, single in found.items():
        taken = [_taken(g, reserved.get(name) or groups.get(name)) for name, g in single.groups.items()]
        problems[file] = single.problems.get(file, []) + [p for p in taken if p is not None]
        if not problems[file] and len(groups) + len(single.groups) > limits.groups:
            message = f"{len(single.groups)} more group(s) would exceed {limits.groups} (limits.groups)"
            problems[file] = [locate.Problem(file, 1, 1, "", message)]
        if not problems[file]:
            groups.update(single.groups)
    return files.LoadResult(groups, problems)


def _taken(group: files.LoadedGroup, owner: files.LoadedGroup | None) -> locate.Problem | None:
    """The problem of defining `group` when `owner` (from another file) already has it."""
    if owner is None or owner.file == group.file:
        return None
    name = group.policy.group
    message = f"group '{name}' is already defined at {owner.file}:{owner.line}, which keeps it"
    return locate.Problem(group.file, group.line, 1, "group", message)


def merge(
    previous: Mapping[str, files.LoadedGroup], result: files.LoadResult
) -> dict[str, files.LoadedGroup]:
    """The groups to manage after a load: good files as loaded, rejected files as they were."""
    rejected = {file for file, problems in result.problems.items() if problems}
    kept = {name: g for name, g in previous.items() if g.file in rejected}
    merged = dict(result.groups)
    for name, group in kept.items():
        merged.setdefault(name, group)
    return merged


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector (reference counting still frees memory); what was
    built meanwhile is frozen, or the first young collection after would scan all of it at once
    (over 100 ms for 10,000 groups). A large removal unfreezes and collects (`runtime.release`)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Reload:
    """The outcome of one reload."""

    groups: dict[str, files.LoadedGroup]
    problems: dict[str, list[locate.Problem]]
    result: str
    """ok, partial (some files rejected) or unchanged."""


class Watcher:
    """Loads the policy paths, on request and whenever their fingerprint changes."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        apply: Callable[[dict[str, files.LoadedGroup]], Awaitable[None] | None],
        metrics: telemetry.Metrics,
        clock: Clock,
        poll_interval: float = 5.0,
        sources: Sequence[str] | None = None,
        limits: safeyaml.Limits | None = None,
    ) -> None:
        self.paths = list(paths)
        # the configured metric source names; None accepts any name (a wrong one fails at query time)
        self.sources = None if sources is None else tuple(sources)
        self.limits = limits or safeyaml.Limits()
        self.apply = apply
        self.metrics = metrics
        self.clock = clock
        self.poll_interval = poll_interval
        self.groups: dict[str, files.LoadedGroup] = {}
        self.problems: dict[str, list[locate.Problem]] = {}
        self.requested = asyncio.Event()
        self.loads = 0
        self._seen: Fingerprint | None = None

    def request(self) -> None:
        """Reload at once (SIGHUP, POST /reload)."""
        self.requested.set()

    def load(self) -> Reload:
        """Read every file now, merge with the last good versions, hand the result over (an
        `apply` that is a coroutine function needs `reload`)."""
        outcome = self._commit(*self._read())
        applied = self.apply(outcome.groups)
        if inspect.isawaitable(applied):
            raise TypeError("an asynchronous apply needs Watcher.reload")
        return outcome

    async def reload(self) -> Reload:
        """`load`, with the reading and validating in a worker thread: loading 10,000 groups
        takes seconds, during which the event loop keeps serving (group by group validation
        leaves it its turns). The hand-over runs on the loop (an asynchronous `apply` may
        hand over in slices)."""
        outcome = self._commit(*await asyncio.to_thread(self._read))
        applied = self.apply(outcome.groups)
        if inspect.isawaitable(applied):
            await applied
        return outcome

    def _read(self) -> tuple[Fingerprint, files.LoadResult, dict[str, files.LoadedGroup]]:
        """The files' fingerprint, what they hold now, and the groups to manage after merging.

        The cyclic garbage collector is held off meanwhile: a load builds millions of objects,
        each full collection would scan them all (over half the load time for 10,000 groups),
        and a collection holds the interpreter, so the event loop would stall for seconds.
        """
        with collector_paused():
            seen = fingerprint(self.paths, self.limits.file_bytes)
            result = load(self.paths, self.groups, self.sources, self.limits)
            return seen, result, merge(self.groups, result)

    def _commit(
        self, seen: Fingerprint, result: files.LoadResult, merged: dict[str, files.LoadedGroup]
    ) -> Reload:
        """Record, log and hand over what `_read` found."""
        self._seen = seen
        problems = {f: p for f, p in result.problems.items() if p}
        changed = merged != self.groups or problems != self.problems
        self._log_problems(problems)
        self.groups, self.problems = merged, problems
        outcome = "partial" if problems else ("ok" if changed or self.loads == 0 else "unchanged")
        self.loads += 1
        self.metrics.policy_reloaded(outcome, self.clock.now())
        self.metrics.policy_load_errors({f: len(p) for f, p in problems.items()})
        return Reload(merged, problems, outcome)

    def _log_problems(self, problems: Mapping[str, list[locate.Problem]]) -> None:
        for file, found in problems.items():
            if self.problems.get(file) != found:
                kept = sorted(n for n, g in self.groups.items() if g.file == file)
                log.error("policy_rejected", file=file, problems=[str(p) for p in found], kept=kept)

    async def run(self, on_reload: Callable[[Reload], None] | None = None) -> None:
        """Root task: reload when asked or when the files change, forever."""
        while True:
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self.requested.wait()
            except TimeoutError:
                if await asyncio.to_thread(fingerprint, self.paths, self.limits.file_bytes) == self._seen:
                    continue
            self.requested.clear()
            outcome = await self.reload()
            if on_reload is not None:
                on_reload(outcome)
