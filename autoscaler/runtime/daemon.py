"""The composition root: builds every part from the settings and runs them as named root tasks.

Startup: settings → sources and target → first policy load (group handlers built, not run) →
target start (connect, first reconcile, which knows the governed groups) → HTTP bound →
READY=1. Then one TaskGroup runs `policy-watcher`, `group-manager`, `http-server`, `watchdog`,
`stopper` and, for a target with background work of its own, `target-upkeep`; a root task that
returns or raises is a bug, so the others are cancelled and the process exits non-zero for
systemd to restart it.

Shutdown (SIGTERM/SIGINT): STOPPING=1 → scheduler stops → handlers start no new action → in-flight
actions get `shutdown_grace` → HTTP, sources and target close. A timer ends the process with
status 70 if all that hangs for `shutdown_grace` + 15 s. An interrupted clone is safe: the target's
reconciler finishes or removes it on the next start. SIGHUP re-reads the policies (RELOADING=1 …
READY=1); so does a change of the files (mtime or content), polled every few seconds. The settings file is not
re-read: when it changed since startup, a reload logs `settings_changed_restart_required` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

from autoscaler import errors, sources, targets
from autoscaler.engine import discovery, handler, journal, limiter, manager, memory, policies
from autoscaler.runtime import clock as clocks
from autoscaler.runtime import http, release, sdfile, sdnotify, ticker
from autoscaler.settings import Settings
from autoscaler.telemetry import metrics as telemetry
from autoscaler.telemetry import registry as registries

if TYPE_CHECKING:
    from autoscaler.coordination import Coordinator

log = structlog.get_logger("autoscaler.daemon")
HARD_DEADLINE_MARGIN = 15.0
LAG_PROBE = 0.5
LAG_RECOVERY = 1.0
"""Seconds the loop must keep within max_loop_lag after a stall before it counts as healthy again."""
EXIT_HUNG = 70
RELEASE_AFTER = 500
"""Removing at least this many groups at once gives their memory back to the system; adding as
many freezes what their first evaluations keep (see `release`)."""
FIRST_EVALUATIONS_MARGIN = 60.0
"""Seconds beyond the first evaluations' window during which their survivors are frozen."""


class RootTaskExited(Exception):
    """A root task ended although the daemon was not stopping (a bug)."""


@runtime_checkable
class Managed(Protocol):
    """A target with a life of its own (KvmTarget: connections, event thread, reconciler)."""

    async def start(self) -> None:
        """Connect and reconcile."""
        ...

    async def close(self) -> None:
        """Stop background work and disconnect."""
        ...

    async def upkeep(self) -> None:
        """Never return while the background work lives; raise once it died."""
        ...


class Daemon:
    """One daemon: parts built from `settings`, unless a test injects the target or sources."""

    def __init__(
        self,
        settings: Settings,
        *,
        target: targets.Target | None = None,
        metric_sources: Mapping[str, sources.MetricSource] | None = None,
        registry: registries.Registry | None = None,
        clock: clocks.SystemClock | None = None,
        settings_file: str | Path | None = None,
    ) -> None:
        """`settings_file` is where `settings` were read from: a reload warns when it has changed."""
        self.settings = settings
        self.settings_file = settings_file
        self._settings_digest = _digest(settings_file)
        self._settings_warned: str | None = None
        self._settings_changed = False
        self.clock = clock or clocks.SystemClock()
        self.metrics = telemetry.Metrics(registry if registry is not None else registries.new())
        self.journal = journal.Journal(settings.engine.journal_size)
        self.target = target
        self.sources = dict(metric_sources) if metric_sources is not None else None
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.http: http.HttpServer | None = None
        self.manager: manager.GroupManager | None = None
        self.watcher: policies.Watcher | None = None
        self.ticker = ticker.Ticker(settings.engine.jitter, pace=settings.engine.first_evaluations_per_second)
        self.coordinator: Coordinator | None = None
        """Set when the settings have a `coordination:` section: then only the leader acts."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._lag = 0.0
        self._lag_peak = 0.0
        self._lagging_until = 0.0
        """Monotonic time until which the loop counts as lagging (the last stall plus LAG_RECOVERY)."""

    # --- building -------------------------------------------------------------------------------

    def _build_target(self) -> targets.Target:
        from autoscaler.runtime import factories

        ledger = self.coordinator.ledger if self.coordinator is not None else None
        return factories.target(
            self.settings.target, self.metrics, self.settings.state_dir, self.coordinator, ledger
        )

    def _deps(self, target: targets.Target, found: Mapping[str, sources.MetricSource]) -> handler.Deps:
        engine = self.settings.engine
        return handler.Deps(
            target=target,
            sources=found,
            clock=self.clock,
            limiter=limiter.Limiter(engine.max_concurrent_actions, engine.slot_timeout),
            store=self.coordinator.store if self.coordinator else memory.MemoryStore(self.settings.state_dir),
            journal=self.journal,
            metrics=self.metrics,
            settings=handler.HandlerSettings(
                query_timeout=engine.query_timeout,
                backoff_initial=engine.backoff_initial,
                backoff_max=engine.backoff_max,
                history_refresh=engine.history_refresh,
            ),
            leadership=self.coordinator or handler.Alone(),
            pauses=self.coordinator.pauses if self.coordinator else None,
        )

    async def _start(self) -> None:
        """Everything READY=1 promises: target reconciled, policies loaded, HTTP bound."""
        from autoscaler.runtime import factories

        if self.settings.coordination is not None:
            await self._start_coordination()
        target = self.target if self.target is not None else self._build_target()
        self.target = target
        if self.sources is None:
            self.sources = factories.source_map(
                self.settings.sources, target, self.settings.limits.response_bytes
            )
        self.manager = manager.GroupManager(self._deps(target, self.sources))
        self.watcher = policies.Watcher(
            self.settings.policies,
            self._apply,
            self.metrics,
            self.clock,
            self.settings.engine.policy_poll,
            sources=list(self.sources),  # a check naming another source rejects its file
            limits=self.settings.limits.policy(),
        )
        # Policies first: the start's reconcile must know which groups are governed, or a crash
        # mid scale-in would be left draining until the periodic reconcile (handlers only run later).
        await self.watcher.reload()
        if isinstance(target, Managed):
            await target.start()
        unmanaged = getattr(target, "unmanaged", None)
        if callable(unmanaged):
            self.metrics.watch_unmanaged(unmanaged)
        host, port = self.settings.http.listen, self.settings.http.port
        self.http = http.HttpServer(self, host, port, self.settings.http.token_file)
        address = await self.http.start()
        log.info("http_listening", address=f"http://{address[0]}:{address[1]}")
        self._check_operator_api(self.http)

    async def _start_coordination(self) -> None:
        """Join the election before the target exists, so its first mutating call is fenced."""
        from autoscaler import coordination
        from autoscaler.telemetry import coordination as coordination_metrics

        assert self.settings.coordination is not None
        coordinator = coordination.Coordinator(self.settings.coordination)
        self.coordinator = coordinator
        coordinator.groups = lambda: [h.group for h in self.manager or ()]
        coordinator.on_change(self._leadership_changed)
        coordination_metrics.register(self.metrics.registry, coordinator.snapshot)
        await coordinator.start()

    def _leadership_changed(self, leading: bool) -> None:
        """A new leader repairs what its predecessor left, then evaluates every group at once."""
        if leading:
            task = asyncio.create_task(self._take_over(), name="take-over")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _take_over(self) -> None:
        """Reconcile every host (finish interrupted clones, roll back abandoned ones), then act."""
        assert self.coordinator is not None
        term = self.coordinator.term()
        await self._migrate_file_ledger()
        take_over = getattr(self.target, "take_over", None)
        if callable(take_over):
            try:
                await take_over(self.coordinator.settings.margin)
            except errors.TargetError as exc:
                log.warning("takeover_reconcile_failed", error=str(exc))
        self.coordinator.settled(term)
        log.info("takeover_done", term=term)
        if self.manager is not None:
            self.manager.poke()

    async def _migrate_file_ledger(self) -> None:
        """Move the volumes this daemon recorded before coordination was enabled into etcd (once).

        Until that succeeds they are not proven ours to any leader, so they are kept, never deleted.
        """
        from autoscaler.coordination import ledger
        from autoscaler.runtime import factories

        assert self.coordinator is not None
        directory = factories.file_ledger_directory(self.settings.state_dir)
        try:
            await ledger.migrate(directory, self.coordinator.ledger)
        except (errors.CoordinationUnavailable, OSError) as exc:
            log.warning("volume_ledger_migration_failed", source=str(directory), error=str(exc))

    def _check_operator_api(self, server: http.HttpServer) -> None:
        """A token file that is configured but unusable is said once at startup, not only per request."""
        operator_api = server.operator_api()
        if server.token_file is not None and operator_api != "enabled":
            log.warning("operator_api_disabled", token_file=server.token_file, reason=operator_api)

    async def _apply(self, groups: dict[str, Any]) -> None:
        """Hand a load over, in slices: 10,000 groups added or dropped at once must not stall the loop."""
        assert self.manager is not None
        with release.collector_paused():  # a full collection would scan the whole load at once
            changes = await self.manager.apply_gradually(groups)
            set_policies = getattr(self.target, "set_policies", None)
            if callable(set_policies):
                set_policies([g.policy for g in groups.values()])
            await self.ticker.sync_gradually(self.manager)
            await self.metrics.sweep_gradually()
        release.settle(len(changes.removed), RELEASE_AFTER)
        if len(changes.added) >= RELEASE_AFTER:  # their first evaluations create as many objects again
            pace = self.settings.engine.first_evaluations_per_second
            release.freeze_survivors(len(changes.added) / pace + FIRST_EVALUATIONS_MARGIN)
        if changes.added or changes.updated or changes.removed:
            log.info(
                "policies_applied", added=changes.added, updated=changes.updated, removed=changes.removed
            )

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until stopped, shut down; the process exit code."""
        try:
            started = await self._start_unless_stopped()
        except (errors.AutoscalerError, OSError) as exc:
            log.error("startup_failed", error=str(exc), error_type=type(exc).__name__)
            await self._abandon_startup()
            return 1
        except BaseException:  # a bug or a cancellation: still leave nothing connected behind
            await self._abandon_startup()
            raise
        if not started:
            sdnotify.stopping()
            log.info("daemon_stopped_during_startup")
            await self._abandon_startup()
            return 0
        self.ticker.start()
        self.started.set()
        sdnotify.ready()
        sdnotify.status(self._summary())
        log.info("daemon_ready", groups=len(list(self.manager or ())))
        return await self._supervise()

    async def _start_unless_stopped(self) -> bool:
        """Start; a stop asked meanwhile (SIGTERM during a slow connect or first reconcile) cuts the
        startup short, which is safe: the next start reconciles again. True once started."""
        starting = asyncio.create_task(self._start(), name="startup")
        stop_asked = asyncio.create_task(self.stopping.wait(), name="stop-during-startup")
        try:
            await asyncio.wait({starting, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_asked.cancel()
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        if starting.cancelled():
            return False
        starting.result()  # startup's own error, if it failed
        return True

    async def _abandon_startup(self) -> None:
        """Close what startup opened; no READY=1 was sent."""
        with self._hard_deadline():
            await self._close_parts()

    async def _supervise(self) -> int:
        roots: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "policy-watcher": self._watch_policies,
            "group-manager": self._manage,
            "http-server": self._serve_http,
            "watchdog": self._watchdog,
            "stopper": self._stop_when_asked,
        }
        if isinstance(self.target, Managed):
            roots["target-upkeep"] = self.target.upkeep
        if self.settings.discovery.file is not None:
            roots["sd-file"] = self._write_sd_file
        if self.coordinator is not None:
            roots["coordination"] = self.coordinator.run
        failed: list[str] = []
        try:
            async with asyncio.TaskGroup() as group:
                for name, root in roots.items():
                    self._tasks[name] = group.create_task(self._guard(name, root), name=name)
        except* RootTaskExited as failure:
            failed = [str(e) for e in failure.exceptions]
        if failed:
            log.error("root_task_failed", errors=failed)
            with self._hard_deadline():
                self.ticker.shutdown()
                await self._close_parts()
            return 1
        return 0

    async def _guard(self, name: str, root: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await root()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("root_task_crashed", task=name)
            raise RootTaskExited(f"{name}: {type(exc).__name__}: {exc}") from exc
        if name != "stopper":
            raise RootTaskExited(f"{name} returned")

    async def _watch_policies(self) -> None:
        assert self.watcher is not None
        await self.watcher.run(self._reloaded)

    def _reloaded(self, outcome: policies.Reload) -> None:
        sdnotify.ready()
        sdnotify.status(self._summary())
        log.info("policies_reloaded", result=outcome.result, groups=sorted(outcome.groups))

    async def _manage(self) -> None:
        assert self.manager is not None
        await self.manager.run()

    async def _serve_http(self) -> None:
        assert self.http is not None
        await self.http.serve()

    async def _watchdog(self) -> None:
        """Probe the loop's lag and feed systemd's watchdog only while healthy.

        A stall of S seconds makes one probe's sleep last between S and S + probe, so health
        compares that whole elapsed time with the limit: a stall longer than the limit is always
        seen, whatever the phase it starts in (one longer than limit - probe may be); health then
        stays bad for LAG_RECOVERY seconds. The metric records the lag beyond the sleep.
        """
        interval = sdnotify.watchdog_interval()
        probe = min(LAG_PROBE, self.settings.engine.max_loop_lag / 2)
        last_ping = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(probe)
            self._record_lag(time.monotonic() - before, probe)
            healthy, _why = self.health()
            if interval is not None and healthy and time.monotonic() - last_ping >= interval:
                sdnotify.watchdog()
                last_ping = time.monotonic()

    def _record_lag(self, elapsed: float, probe: float) -> None:
        lag = max(0.0, elapsed - probe)
        self._lag = lag
        self.metrics.loop_lagged(lag)
        if elapsed > self.settings.engine.max_loop_lag:
            self._lag_peak = elapsed
            self._lagging_until = time.monotonic() + LAG_RECOVERY

    @contextlib.contextmanager
    def _hard_deadline(self) -> Iterator[None]:
        """End the process with EXIT_HUNG if the block outlives the grace plus a margin."""
        deadline = threading.Timer(self.settings.engine.shutdown_grace + HARD_DEADLINE_MARGIN, _hung)
        deadline.daemon = True
        deadline.start()
        try:
            yield
        finally:
            deadline.cancel()

    async def _stop_when_asked(self) -> None:
        await self.stopping.wait()
        with self._hard_deadline():
            await self._shutdown()
        for name, task in self._tasks.items():
            if name != "stopper":
                task.cancel()

    async def _shutdown(self) -> None:
        sdnotify.stopping()
        log.info("daemon_stopping", grace=self.settings.engine.shutdown_grace)
        self.ticker.shutdown()
        if self.coordinator is not None:
            # Hand over first: a standby takes over within its campaign interval, and an action
            # still in flight here is fenced at its next call (the new leader reconciles it).
            await self.coordinator.close()
        if self.manager is not None:
            await self.manager.stop(self.settings.engine.shutdown_grace)
        await self._close_parts()
        log.info("daemon_stopped")

    async def _close_parts(self) -> None:
        if self.coordinator is not None:
            await self.coordinator.close()
        if self.http is not None:
            await self.http.stop()
        for source in (self.sources or {}).values():
            close = getattr(source, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    await close()
        if isinstance(self.target, Managed):
            with contextlib.suppress(errors.TargetError):
                await self.target.close()

    # --- control --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin an orderly shutdown (SIGTERM, SIGINT)."""
        self.stopping.set()

    def request_reload(self) -> None:
        """Re-read the policies (SIGHUP, POST /reload); the settings need a restart, which is said."""
        sdnotify.reloading()
        self._check_settings_file()
        if self.watcher is not None:
            self.watcher.request()

    def _check_settings_file(self) -> None:
        """One warning per new content of the settings file: a reload does not apply it."""
        if self.settings_file is None:
            return
        digest = _digest(self.settings_file)
        self._settings_changed = digest != self._settings_digest
        if not self._settings_changed or digest == self._settings_warned:
            return
        self._settings_warned = digest
        log.warning(
            "settings_changed_restart_required",
            file=str(self.settings_file),
            detail="a reload re-reads the policies only; restart the daemon to apply the new settings",
        )

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGTERM/SIGINT stop, SIGHUP reloads; returns a function that removes the handlers."""
        loop = asyncio.get_running_loop()
        actions = {signal.SIGTERM: self.request_stop, signal.SIGINT: self.request_stop}
        actions[signal.SIGHUP] = self.request_reload
        for number, action in actions.items():
            loop.add_signal_handler(number, action)

        def remove() -> None:
            for number in actions:
                loop.remove_signal_handler(number)

        return remove

    # --- http.Api -------------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """Startup finished, shutdown has not begun and, when coordinated, etcd answers."""
        started = self.started.is_set() and not self.stopping.is_set()
        return started and (self.coordinator is None or self.coordinator.unready() is None)

    def unready_reason(self) -> str:
        """Why /readyz says 503."""
        if self.stopping.is_set():
            return "stopping"
        if not self.started.is_set():
            return "starting"
        why = self.coordinator.unready() if self.coordinator is not None else None
        return why or "ready"

    def health(self) -> tuple[bool, str]:
        """Unhealthy when a root task has died or the loop lagged beyond the limit within LAG_RECOVERY."""
        dead = [name for name, task in self._tasks.items() if task.done() and name != "stopper"]
        if dead and not self.stopping.is_set():
            return False, f"root task(s) ended: {', '.join(dead)}"
        if time.monotonic() < self._lagging_until:
            limit = self.settings.engine.max_loop_lag
            return False, f"event loop lag {self._lag_peak:.1f}s (limit {limit:g}s)"
        return True, ""

    def group(self, name: str) -> handler.GroupHandler | None:
        """A managed group's handler."""
        return self.manager.get(name) if self.manager is not None else None

    def status(self) -> dict[str, Any]:
        """Every group, policy problems and the daemon's own state."""
        handlers = list(self.manager or ())
        problems = self.watcher.problems if self.watcher is not None else {}
        leader = self.coordinator.election.leader if self.coordinator is not None else "self"
        return {
            "ready": self.is_ready(),
            "group_names": [h.group for h in handlers],
            "groups": [{**h.status(), "leader": leader, **self._pause_shown(h)} for h in handlers],
            "coordination": self.coordinator.status() if self.coordinator is not None else None,
            "hosts": self._hosts_status(),
            "policy_problems": {f: [str(p) for p in found] for f, found in problems.items()},
            "actions_in_flight": sum(1 for h in handlers if h.acting),
            "event_loop_lag_seconds": self._lag,
            "operator_api": self.http.operator_api() if self.http is not None else "starting",
            "settings_restart_required": self._settings_changed,
        }

    def _pause_shown(self, group: handler.GroupHandler) -> dict[str, Any]:
        """Who paused the group and when, when coordinated (the pause in etcd records both; a
        daemon alone shows the time its own memory file keeps)."""
        if self.coordinator is None or group.paused is None:
            return {}
        shown = self.coordinator.pause_shown(group.group)
        if shown is None:
            return {}
        return {"paused_by": shown["by"], "paused_at": shown["at"]}

    async def targets(self) -> list[dict[str, Any]]:
        """Prometheus http_sd entries: every managed group's ready and draining members."""
        entries: list[dict[str, Any]] = []
        for each in list(self.manager or ()):
            inventory = each.inventory
            if self.target is not None:
                with contextlib.suppress(errors.TargetError):
                    inventory = await self.target.inventory(each.group)
            if inventory is not None:
                entries += discovery.target_groups(each.policy, inventory)
        return entries

    async def _write_sd_file(self) -> None:
        """Keep the file_sd file equal to GET /v1/targets (rewritten atomically when it changes)."""
        path, written = self.settings.discovery.file, None
        assert path is not None
        while True:
            text = json.dumps(await self.targets(), indent=1, sort_keys=True) + "\n"
            if text != written:
                await asyncio.to_thread(sdfile.write, path, text)
                written = text
            await asyncio.sleep(self.settings.discovery.interval)

    def _hosts_status(self) -> object:
        """The target's view of its hosts (reachable, dead, skipped by placement), when it has one."""
        hosts_status = getattr(self.target, "hosts_status", None)
        return hosts_status() if callable(hosts_status) else None

    def _summary(self) -> str:
        handlers = list(self.manager or ())
        members = sum(h.inventory.current for h in handlers if h.inventory is not None)
        return f"{len(handlers)} group(s), {members} instance(s)"


def _digest(path: str | Path | None) -> str | None:
    """SHA-256 of a small file's content (None when there is no file or it cannot be read)."""
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _hung() -> None:
    """The hard shutdown deadline passed: leave now (systemd would SIGKILL us a little later)."""
    os._exit(EXIT_HUNG)
