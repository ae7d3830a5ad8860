"""The composition root end to end over fakes at the seams: real HTTP, real signals, real sd_notify socket."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import time
import weakref
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from autoscaler import errors, settings
from autoscaler.engine import handler as handlers
from autoscaler.runtime import clock, daemon
from tests import fakes

POLICY = """\
group: web
golden: golden-web.qcow2
template: web-template
min: 1
max: 10
evaluation_interval: 1s
warmup: 0s
checks:
  - name: load
    source: fake
    query: load
    strategy: {kind: per_instance, per_instance: 10, tolerance: 0}
scale_up: {cooldown: 0s}
scale_down: {stabilization: 0s, cooldown: 0s}
"""

TOKEN = "s3cret"


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket announced as NOTIFY_SOCKET, as systemd provides it."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


async def next_message(sock: socket.socket, wanted: str, deadline: float = 10.0) -> str:
    """The next datagram that contains `wanted` (earlier ones are skipped)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(deadline):
        while True:
            message = (await loop.sock_recv(sock, 4096)).decode()
            if wanted in message:
                return message


@dataclass
class Running:
    """A daemon running in this test's loop, with what the test needs to poke at it."""

    runner: daemon.Daemon
    task: asyncio.Task[int]
    target: fakes.FakeTarget
    source: fakes.FakeMetricSource
    policies: Path
    token: str
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        assert self.runner.http is not None
        assert self.runner.http.address is not None
        host, port = self.runner.http.address
        return f"http://{host}:{port}"

    async def get_json(self, path: str) -> dict[str, object]:
        async with self.http.get(self.url + path) as response:
            assert response.status == 200
            data: dict[str, object] = await response.json()
            return data

    async def post(self, path: str, authorization: str | None = None, **kwargs: object) -> tuple[int, str]:
        """POST with `Authorization: Bearer <token>` unless another header value is given."""
        header = f"Bearer {self.token}" if authorization is None else authorization
        headers = {"Authorization": header} if header else {}
        async with self.http.post(self.url + path, headers=headers, **kwargs) as response:  # type: ignore[arg-type]
            return response.status, await response.text()

    def handler(self, group: str = "web") -> handlers.GroupHandler:
        found = self.runner.group(group)
        assert found is not None
        return found


def make_settings(tmp_path: Path, **engine: object) -> tuple[settings.Settings, Path]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(POLICY)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    base = settings.Settings(
        policies=(str(policies),),
        state_dir=str(tmp_path / "state"),
        http=settings.HttpSettings(port=0, token_file=str(token)),
    )
    tuned = replace(base.engine, **{"jitter": 0.0, "policy_poll": 0.2, "shutdown_grace": 5.0, **engine})
    return replace(base, engine=tuned), policies


def fake_target(members: int = 0, **options: object) -> fakes.FakeTarget:
    target = fakes.FakeTarget(clock.SystemClock(), boot_time=0.0, **options)  # type: ignore[arg-type]
    if members:
        target.add("web", members)
    return target


@contextlib.asynccontextmanager
async def daemon_running(
    config: settings.Settings,
    notify: socket.socket | None = None,
    *,
    target: fakes.FakeTarget | None = None,
    source: fakes.FakeMetricSource | None = None,
    ready: bool = True,
    **options: object,
) -> AsyncIterator[Running]:
    """Run a Daemon over fakes with its signal handlers; stop it (and check it stopped) on the way out.

    With `ready` it waits for READY=1 on `notify` (or for `started` without one) before yielding.
    """
    target = target if target is not None else fake_target()
    source = source if source is not None else fakes.FakeMetricSource()
    runner = daemon.Daemon(
        config, target=target, metric_sources={"fake": source}, registry=CollectorRegistry(), **options
    )  # type: ignore[arg-type]
    remove = runner.install_signal_handlers()
    task = asyncio.create_task(runner.run())
    try:
        if ready and notify is not None:
            await next_message(notify, "READY=1")
        elif ready:
            await fakes.eventually(lambda: runner.started.is_set() or task.done(), 10.0)
            assert not task.done(), "the daemon did not start"
        async with aiohttp.ClientSession() as session:
            yield Running(runner, task, target, source, Path(config.policies[0]), TOKEN, session)
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 10)
        remove()


@pytest.fixture
async def running(tmp_path: Path, notify: socket.socket) -> AsyncIterator[Running]:
    config, _policies = make_settings(tmp_path)
    source = fakes.FakeMetricSource(values={"load": 45.0})
    async with daemon_running(config, notify, target=fake_target(2), source=source) as started:
        yield started


async def test_ready_only_after_startup_then_scales_and_serves(running: Running) -> None:
    async with running.http.get(running.url + "/readyz") as response:
        assert response.status == 200
    await fakes.eventually(lambda: len(running.target.names("web")) == 5)
    registry = running.runner.metrics.registry
    await fakes.eventually(
        lambda: registry.get_sample_value("autoscaler_evaluations_total", {"group": "web", "result": "ok"})
    )
    async with running.http.get(running.url + "/metrics") as response:
        text = await response.text()
    assert 'autoscaler_group_desired_instances{group="web"} 5.0' in text
    assert 'autoscaler_evaluations_total{group="web",result="ok"}' in text
    status = await running.get_json("/status")
    groups = status["groups"]
    assert isinstance(groups, list)
    assert groups[0]["group"] == "web"
    async with running.http.get(running.url + "/explain/web") as response:
        assert "result: 5" in await response.text()


async def test_served_metrics_pass_promtool(running: Running) -> None:
    await fakes.eventually(lambda: len(running.target.names("web")) == 5)
    async with running.http.get(running.url + "/metrics") as response:
        body = await response.read()
    checked = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, problems = await checked.communicate(body)
    assert checked.returncode == 0, problems.decode()
    assert b"autoscaler_scale_operations_total" in body


async def test_sighup_keeps_the_last_good_policy(running: Running, notify: socket.socket) -> None:
    await fakes.eventually(lambda: running.runner.journal.last("web") is not None)
    file = str(running.policies / "web.yaml")
    with capture_logs() as logs:
        (running.policies / "web.yaml").write_text(POLICY.replace("max: 10", "max: ten"))
        for _ in range(2):  # the same problem again is not logged again
            os.kill(os.getpid(), signal.SIGHUP)
            assert "MONOTONIC_USEC=" in await next_message(notify, "RELOADING=1")
            await next_message(notify, "READY=1")
        ticks = running.handler().ticks
        await fakes.eventually(lambda: running.handler().ticks > ticks)
    assert running.handler().policy.max == 10
    assert running.handler().latest.policy.max == 10
    status = await running.get_json("/status")
    assert status["group_names"] == ["web"]
    problems = status["policy_problems"]
    assert isinstance(problems, dict)
    assert any("max" in line for lines in problems.values() for line in lines)
    registry = running.runner.metrics.registry
    assert registry.get_sample_value("autoscaler_policy_load_errors", {"file": file}) == 1
    rejected = [e for e in logs if e["event"] == "policy_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["file"] == file
    assert rejected[0]["kept"] == ["web"]
    assert any("max" in str(problem) for problem in rejected[0]["problems"])


async def test_an_edit_of_the_same_size_is_applied_by_the_poll_without_a_signal(running: Running) -> None:
    await fakes.eventually(lambda: running.runner.journal.last("web") is not None)
    path = running.policies / "web.yaml"
    before = path.stat()
    loads = running.runner.watcher.loads if running.runner.watcher is not None else 0
    path.write_text(POLICY.replace("max: 10", "max: 12"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert path.stat().st_size == before.st_size

    await fakes.eventually(lambda: running.handler().policy.max == 12)

    assert running.runner.watcher is not None
    assert running.runner.watcher.loads == loads + 1
    assert running.runner.watcher.problems == {}


async def test_removing_a_policy_file_unmanages_without_destroying(running: Running) -> None:
    await fakes.eventually(lambda: len(running.target.names("web")) == 5)
    (running.policies / "web.yaml").unlink()
    await fakes.eventually(lambda: running.runner.group("web") is None)
    assert len(running.target.names("web")) == 5
    assert [op for op, *_ in running.target.calls] == ["scale_out"]


async def test_a_removed_group_leaves_no_state_behind(running: Running) -> None:
    runner = running.runner
    await fakes.eventually(lambda: runner.journal.last("web") is not None)
    handler = weakref.ref(running.handler())
    (running.policies / "web.yaml").unlink()
    await fakes.eventually(lambda: runner.group("web") is None)
    await fakes.eventually(lambda: b'group="web"' not in generate_latest(runner.metrics.registry))
    assert runner.journal.last("web") is None
    assert "web" not in runner.ticker._pulses
    assert runner.manager is not None
    assert "web" not in runner.manager.deps.store._written
    assert handler() is None  # freed by reference counting: the daemon froze the load's objects
    gc.unfreeze()  # nor does anything still reach it through a cycle
    gc.collect()
    assert handler() is None


async def test_pause_needs_the_token_and_holds_the_group(running: Running) -> None:
    async with running.http.post(running.url + "/groups/web/pause", json={"reason": "x"}) as response:
        assert response.status == 401
    headers = {"Authorization": "Bearer s3cret"}
    async with running.http.post(
        running.url + "/groups/web/pause", json={"reason": "freeze"}, headers=headers
    ) as response:
        assert response.status == 200
    handler = running.runner.group("web")
    assert handler is not None
    assert handler.paused == "freeze"
    running.source.values["load"] = 95.0
    await fakes.eventually(lambda: handler.ticks >= 3)
    assert len(running.target.names("web")) <= 5
    last = running.runner.journal.last("web")
    assert last is not None
    assert last.state == "paused"


async def test_resume_lets_the_group_act_again_on_the_next_tick(running: Running) -> None:
    await fakes.eventually(lambda: len(running.target.names("web")) == 5)
    assert (await running.post("/groups/web/pause", json={"reason": "freeze"}))[0] == 200
    handler = running.handler()
    running.source.values["load"] = 75.0
    ticks = handler.ticks
    await fakes.eventually(lambda: handler.ticks >= ticks + 2)
    assert len(running.target.names("web")) == 5

    status, text = await running.post("/groups/web/resume")

    assert status == 200
    assert '"paused": null' in text
    await fakes.eventually(lambda: len(running.target.names("web")) == 8)
    last = running.runner.journal.last("web")
    assert last is not None
    assert last.state != "paused"


async def test_post_reload_rereads_the_policies_between_reloading_and_ready(
    tmp_path: Path, notify: socket.socket
) -> None:
    config, policies = make_settings(tmp_path, policy_poll=600.0)  # only the request can reload
    source = fakes.FakeMetricSource(values={"load": 45.0})
    async with daemon_running(config, notify, target=fake_target(2), source=source) as started:
        await fakes.eventually(lambda: len(started.target.names("web")) == 5)
        (policies / "web.yaml").write_text(POLICY.replace("max: 10", "max: 3"))

        status, text = await started.post("/reload")

        assert status == 202
        assert "requested" in text
        assert "MONOTONIC_USEC=" in await next_message(notify, "RELOADING=1")
        await next_message(notify, "READY=1")
        assert started.handler().latest.policy.max == 3
        await fakes.eventually(lambda: len(started.target.names("web")) == 3)
        assert started.handler().policy.max == 3


async def test_sighup_warns_once_that_a_changed_settings_file_needs_a_restart(
    tmp_path: Path, notify: socket.socket
) -> None:
    config, _policies = make_settings(tmp_path)
    settings_file = tmp_path / "autoscaler.yaml"
    settings_file.write_text("log: {level: info}\n")

    async def reload() -> None:
        os.kill(os.getpid(), signal.SIGHUP)
        await next_message(notify, "RELOADING=1")
        await next_message(notify, "READY=1")

    def restart_warnings() -> list[MutableMapping[str, object]]:
        return [e for e in logs if e["event"] == "settings_changed_restart_required"]

    with capture_logs() as logs:
        async with daemon_running(config, notify, settings_file=settings_file) as started:
            await reload()
            assert restart_warnings() == []
            settings_file.write_text("log: {level: debug}\n")
            await reload()
            await reload()
            assert len(restart_warnings()) == 1
            assert (await started.get_json("/status"))["settings_restart_required"] is True
            settings_file.write_text("log: {level: warning}\n")
            await reload()
    warnings = restart_warnings()
    assert len(warnings) == 2
    assert all(w["file"] == str(settings_file) and w["log_level"] == "warning" for w in warnings)


async def test_a_wrong_token_is_401_and_changes_nothing(running: Running) -> None:
    status, _text = await running.post("/groups/web/pause", "Bearer wrong")
    assert status == 401
    assert (await running.post("/reload", "Bearer wrong"))[0] == 401
    assert running.handler().paused is None


async def test_operator_actions_are_403_without_a_token_file(tmp_path: Path, notify: socket.socket) -> None:
    config, _policies = make_settings(tmp_path)
    config = replace(config, http=replace(config.http, token_file=None))
    async with daemon_running(config, notify) as started:
        for path in ("/groups/web/pause", "/groups/web/resume", "/reload"):
            status, text = await started.post(path)
            assert status == 403, path
            assert "no http.token_file" in text


async def test_an_unknown_group_is_404(running: Running) -> None:
    assert (await running.post("/groups/nope/pause"))[0] == 404
    assert (await running.post("/groups/nope/resume"))[0] == 404
    async with running.http.get(running.url + "/explain/nope") as response:
        assert response.status == 404


async def test_healthz_is_200_when_healthy(running: Running) -> None:
    async with running.http.get(running.url + "/healthz") as response:
        assert response.status == 200
        assert await response.text() == "ok"


async def test_sigterm_stops_cleanly_and_says_so(tmp_path: Path, notify: socket.socket) -> None:
    config, _policies = make_settings(tmp_path)
    async with daemon_running(config, notify) as started:
        os.kill(os.getpid(), signal.SIGTERM)
        await next_message(notify, "STOPPING=1")
        assert await asyncio.wait_for(started.task, 10) == 0


async def test_in_flight_action_is_abandoned_after_the_grace(tmp_path: Path, notify: socket.socket) -> None:
    config, _policies = make_settings(tmp_path, shutdown_grace=0.3)
    target = fake_target(1, gate=asyncio.Event())
    source = fakes.FakeMetricSource(values={"load": 90.0})
    async with daemon_running(config, notify, target=target, source=source) as started:
        await fakes.eventually(lambda: target.calls)
        started.runner.request_stop()
        assert await asyncio.wait_for(started.task, 5) == 0
    assert len(target.names("web")) == 1
    assert target.gate is not None
    assert not target.gate.is_set()


async def test_watchdog_is_fed_while_healthy(
    tmp_path: Path, notify: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    config, _policies = make_settings(tmp_path)
    async with daemon_running(config, notify) as started:
        assert await next_message(notify, "WATCHDOG=1") == "WATCHDOG=1"
        assert started.runner.health() == (True, "")
        lag = started.runner.metrics.registry.get_sample_value("autoscaler_event_loop_lag_seconds_count")
        assert lag is not None
        assert lag >= 1


async def test_watchdog_stops_while_the_loop_lags_and_resumes_after(
    tmp_path: Path, notify: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    config, _policies = make_settings(tmp_path, max_loop_lag=0.2)
    async with daemon_running(config, notify) as started:
        await next_message(notify, "WATCHDOG=1")
        loop = asyncio.get_running_loop()
        stalled: asyncio.Future[float] = loop.create_future()

        def stall() -> None:
            pending_datagrams(notify)  # forget what was sent before the stall
            time.sleep(0.5)  # a blocking call on the loop, as a libvirt call made inline would be
            stalled.set_result(time.monotonic())

        loop.call_soon(stall)
        stall_end = await stalled

        async with started.http.get(started.url + "/healthz") as response:
            assert response.status == 503
            assert "event loop lag" in await response.text()
        assert not started.runner.health()[0]
        assert "WATCHDOG=1" not in pending_datagrams(notify)
        await next_message(notify, "WATCHDOG=1")
        assert time.monotonic() - stall_end >= daemon.LAG_RECOVERY * 0.9
        assert started.runner.health() == (True, "")
        async with started.http.get(started.url + "/healthz") as response:
            assert response.status == 200


async def test_a_stall_just_beyond_the_limit_is_seen_whatever_its_phase(
    tmp_path: Path, notify: socket.socket
) -> None:
    config, _policies = make_settings(tmp_path, max_loop_lag=0.2)
    async with daemon_running(config, notify) as started:
        loop = asyncio.get_running_loop()
        for _ in range(4):  # each stall starts at another point of the probe's sleep
            await fakes.eventually(lambda: started.runner.health()[0], 5.0)
            stalled: asyncio.Future[None] = loop.create_future()

            def stall(done: asyncio.Future[None] = stalled) -> None:
                time.sleep(0.25)  # 1.25 x the limit
                done.set_result(None)

            loop.call_soon(stall)
            await stalled
            await fakes.eventually(lambda: not started.runner.health()[0], 1.0)


def managed_target(**options: object) -> fakes.ManagedFakeTarget:
    return fakes.ManagedFakeTarget(clock.SystemClock(), boot_time=0.0, **options)  # type: ignore[arg-type]


async def test_managed_target_is_started_and_closed(tmp_path: Path, notify: socket.socket) -> None:
    config, _policies = make_settings(tmp_path)
    target = managed_target()
    async with daemon_running(config, notify, target=target) as started:
        assert target.started
        assert started.runner.health() == (True, "")
        started.runner.request_stop()
        assert await asyncio.wait_for(started.task, 10) == 0
    assert target.closed


async def test_dead_target_upkeep_exits_with_status_1(tmp_path: Path, notify: socket.socket) -> None:
    config, _policies = make_settings(tmp_path)
    target = managed_target()
    async with daemon_running(config, notify, target=target) as started:
        target.upkeep_broken.set()
        assert (
            await asyncio.wait_for(started.task, 10) == 1
        )  # systemd's Restart=on-failure takes it from here
    assert target.closed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def assert_no_datagram(notify: socket.socket) -> None:
    """Nothing at all was sent to NOTIFY_SOCKET (no READY=1, in particular)."""
    with pytest.raises(BlockingIOError):
        notify.recv(4096)


def pending_datagrams(notify: socket.socket) -> list[str]:
    """Every datagram waiting in the socket (read without blocking)."""
    found = []
    with contextlib.suppress(BlockingIOError):
        while True:
            found.append(notify.recv(4096).decode())
    return found


async def test_ready_waits_for_the_target_to_finish_starting(tmp_path: Path, notify: socket.socket) -> None:
    config, _policies = make_settings(tmp_path)
    port = free_port()
    config = replace(config, http=replace(config.http, port=port))
    target = managed_target(start_gate=asyncio.Event())
    async with daemon_running(config, notify, target=target, ready=False) as started:
        await fakes.eventually(lambda: target.starting)
        await asyncio.sleep(0)  # a chance for a premature READY=1 to be sent
        assert_no_datagram(notify)
        assert not started.runner.is_ready()
        with pytest.raises(aiohttp.ClientConnectionError):
            await started.http.get(f"http://127.0.0.1:{port}/readyz")

        assert target.start_gate is not None
        target.start_gate.set()

        assert await next_message(notify, "READY=1") == "READY=1"
        async with started.http.get(f"http://127.0.0.1:{port}/readyz") as response:
            assert response.status == 200


async def test_sigterm_during_a_slow_start_stops_at_once_without_ready(
    tmp_path: Path, notify: socket.socket
) -> None:
    config, _policies = make_settings(tmp_path)
    target = managed_target(start_gate=asyncio.Event())  # the first reconcile never ends
    async with daemon_running(config, notify, target=target, ready=False) as started:
        await fakes.eventually(lambda: target.starting)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(started.task, 10) == 0
        assert await next_message(notify, "STOPPING=1") == "STOPPING=1"
    assert target.closed
    assert not started.runner.started.is_set()


async def test_a_target_that_fails_to_start_exits_1_without_ready(
    tmp_path: Path, notify: socket.socket
) -> None:
    config, _policies = make_settings(tmp_path)
    target = managed_target(start_error=errors.TargetTemporary("libvirt: cannot connect"))
    async with daemon_running(config, notify, target=target, ready=False) as started:
        assert await asyncio.wait_for(started.task, 10) == 1
    assert_no_datagram(notify)
    assert target.starting
    assert target.closed


async def test_a_port_already_bound_exits_1_without_ready(tmp_path: Path, notify: socket.socket) -> None:
    config, _policies = make_settings(tmp_path)
    target = managed_target()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config = replace(config, http=replace(config.http, listen="127.0.0.1", port=port))
        async with daemon_running(config, notify, target=target, ready=False) as started:
            assert await asyncio.wait_for(started.task, 10) == 1
    assert_no_datagram(notify)
    assert target.started
    assert target.closed


async def test_an_unexpected_startup_error_still_closes_the_target(
    tmp_path: Path, notify: socket.socket
) -> None:
    config, _policies = make_settings(tmp_path)
    target = managed_target(start_error=RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        async with daemon_running(config, notify, target=target, ready=False) as starting:
            await asyncio.wait_for(starting.task, 10)  # the policies load first, in a thread
    assert_no_datagram(notify)
    assert target.closed


HUNG_SHUTDOWN = """
import asyncio, sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from autoscaler.engine import handler as handlers
from autoscaler.runtime import clock, daemon
from tests import fakes
from tests.runtime.test_daemon import make_settings

async def main() -> int:
    daemon.HARD_DEADLINE_MARGIN = 0.5
    config, _ = make_settings(Path(sys.argv[1]), shutdown_grace=0.2)
    target = fakes.ManagedFakeTarget(clock.SystemClock(), boot_time=0.0, close_hangs=True)
    runner = daemon.Daemon(
        config, target=target, metric_sources={"fake": fakes.FakeMetricSource()}, registry=CollectorRegistry()
    )
    task = asyncio.create_task(runner.run())
    await runner.started.wait()
    runner.request_stop()
    return await task

sys.exit(asyncio.run(main()))
"""


async def test_a_shutdown_that_hangs_ends_the_process_with_status_70(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HUNG_SHUTDOWN,
        str(tmp_path),
        cwd=Path(__file__).parent.parent.parent,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(child.communicate(), 30)
    finally:
        if child.returncode is None:
            child.kill()
    assert child.returncode == daemon.EXIT_HUNG, stderr.decode()[-2000:]


async def test_a_policy_naming_an_unconfigured_source_is_rejected_with_its_location(
    tmp_path: Path, notify: socket.socket
) -> None:
    config, policies = make_settings(tmp_path)
    (policies / "web.yaml").write_text(POLICY.replace("source: fake", "source: promethues"))
    async with daemon_running(config, notify) as started:
        status = await started.get_json("/status")
        assert status["group_names"] == []
        problems = status["policy_problems"]
        assert isinstance(problems, dict)
        [lines] = problems.values()
        assert any("checks[0].source: unknown metric source 'promethues'" in line for line in lines)
