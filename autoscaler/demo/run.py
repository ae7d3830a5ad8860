"""`autoscaler demo`: the real daemon in a self-contained world, on any machine, in one command.

It picks a world (`modes.choose`, shown on the banner's `world:` line). Served, where the machine
allows (root, QEMU, dnsmasq, HAProxy, Prometheus): a private network namespace with its own
libvirtd, test guests that answer HTTP behind HAProxy, Prometheus scraping their request counters,
and the office day replayed as HTTP requests through HAProxy (`traffic.HttpLoad`); the panel
shows requests/s served per instance. Otherwise the webmail load generator's sessions drive
empty QEMU clones on the system libvirt, or libvirt's test driver. Either way the very same
`Daemon` as `autoscaler run` runs, serving its own /metrics, with the operator endpoints enabled
by a random token (the banner prints curl lines to use). Ctrl-C (or `--duration`) stops the daemon
cleanly, removes the demo's domains and undoes the setup (the namespace and all it held).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from autoscaler.demo import config, host, loadgen, modes, netns, served, traffic
from autoscaler.policy import files
from autoscaler.runtime import daemon, live
from autoscaler.telemetry import logging as logs

START_HOUR = 6.0
"""The replayed day starts before the morning ramp, so the first minute already shows scaling."""
MAX_REQUESTS = 200_000
"""The served world's load generator sends no more than this, however long the demo runs."""


class DemoUsageError(Exception):
    """The demo cannot run as asked (an --uri that does not answer): a usage error, exit status 2."""


def main(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or `--duration`; the exit code of the daemon (2 for a usage error)."""
    console = Console()
    plain = args.plain or not console.is_terminal
    if plain:  # lines for a log or a pipe: a URL or a curl command must never be cut in two
        console = Console(soft_wrap=True, highlight=False)
    log_stream = None if plain else io.StringIO()
    logs.configure("warning" if not plain else "info", json=False, stream=log_stream)
    workdir = Path(tempfile.mkdtemp(prefix="autoscaler-demo-"))
    rig: netns.Rig | None = None
    try:
        choice = modes.choose(args.mode, args.uri, netns.missing_parts(), shutil.which)
        if choice.mode == "served":
            console.print("starting the private namespace and its libvirtd (a first run builds the image)")
            rig, choice = _open_rig(workdir, choice)
        console.print(choice.banner(), highlight=False, soft_wrap=True, markup=False)
        return asyncio.run(_demo(args, console, workdir, choice, rig))
    except modes.ModeUnavailable as exc:
        print(f"autoscaler demo: error: argument --mode: {exc}", file=sys.stderr)
        return 2
    except DemoUsageError as exc:
        print(f"autoscaler demo: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if rig is not None:
            served.stop(rig)
        shutil.rmtree(workdir, ignore_errors=True)


def _open_rig(workdir: Path, choice: modes.Choice) -> tuple[netns.Rig | None, modes.Choice]:
    """The namespace for the served world; when it cannot be made, auto mode falls back to qemu."""
    try:
        return served.open_rig(workdir / "rig", scratch=workdir), choice
    except (netns.RigUnavailable, netns.RigError, OSError, subprocess.SubprocessError) as exc:
        if choice.reason == "asked for":
            raise DemoUsageError(f"argument --mode: served cannot run here: {exc}") from exc
        reason = " ".join(str(exc).split())[:200]
        return None, modes.Choice("qemu", f"the served world failed to start ({reason})")


async def _prepare(workdir: Path, uri: str | None) -> host.DemoHost:
    """The demo's host; an --uri that cannot be used is a usage error, not a traceback."""
    try:
        return await host.prepare(workdir, uri)
    except (RuntimeError, OSError) as exc:
        if uri is None:
            raise
        reason = " ".join(str(exc).split())
        raise DemoUsageError(f"argument --uri: {uri} cannot be used: {reason}") from exc


async def _demo(
    args: argparse.Namespace, console: Console, workdir: Path, choice: modes.Choice, rig: netns.Rig | None
) -> int:
    generator: loadgen.LoadGenerator | None = None
    prepared: host.DemoHost | None = None
    world: served.ServedWorld | None = None
    try:
        port = args.port
        if rig is not None:
            port = port or netns.loopback_port()  # this process joined the namespace
            world = await served.start(rig, workdir, port)
            prepared = world.prepared
        else:
            prepared = await _prepare(workdir, "test" if choice.mode == "test" else args.uri)
        generator = loadgen.LoadGenerator(day_seconds=args.day_seconds, start_hour=START_HOUR)
        exporter_url = await generator.start()
        return await _run_daemon(args, console, workdir, prepared, generator, exporter_url, port, world)
    finally:
        if prepared is not None and world is None:
            await _remove_domains(prepared, workdir)
            await prepared.release()
        if generator is not None:
            await generator.stop()


async def _run_daemon(
    args: argparse.Namespace,
    console: Console,
    workdir: Path,
    prepared: host.DemoHost,
    generator: loadgen.LoadGenerator,
    exporter_url: str,
    port: int,
    world: served.ServedWorld | None,
) -> int:
    policies = workdir / "policies"
    policies.mkdir()
    policy_text = prepared.policy_text
    if policy_text is None:
        policy_text = config.policy_yaml(prepared.golden, prepared.template, prepared.pool)
    (policies / f"{config.GROUP}.yaml").write_text(policy_text, encoding="utf-8")
    token_file = config.write_token(workdir)
    settings = config.daemon_settings(
        workdir,
        prepared.uri,
        exporter_url,
        port,
        prepared.memory_reserve_mib,
        token_file,
        prometheus_url=world.prometheus_url if world is not None else None,
    )
    runner = daemon.Daemon(settings)
    remove_handlers = runner.install_signal_handlers()
    loop = asyncio.get_running_loop()
    timer = loop.call_later(args.duration, runner.request_stop) if args.duration else None
    load = _http_load(world, generator)
    tasks = [asyncio.create_task(_view(runner, generator, prepared, console, args, load, world))]
    if load is not None:
        tasks.append(asyncio.create_task(_once_serving(runner, load, console)))
    try:
        return await runner.run()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if timer is not None:
            timer.cancel()
        remove_handlers()
        if load is not None:
            console.print(load.summary(), highlight=False, soft_wrap=True, markup=False)


def _serving(runner: daemon.Daemon) -> bool:
    handler = runner.group(config.GROUP)
    return handler is not None and handler.inventory is not None and handler.inventory.ready > 0


def _http_load(world: served.ServedWorld | None, generator: loadgen.LoadGenerator) -> traffic.HttpLoad | None:
    """The office day as requests through HAProxy (served world only), bounded in count and pace."""
    if world is None:
        return None

    def rate() -> float:
        return config.SERVED_PEAK_RPS * loadgen.office_load(generator.day_hours())

    return traffic.HttpLoad(world.frontend, rate, cap=MAX_REQUESTS)


async def _once_serving(runner: daemon.Daemon, load: traffic.HttpLoad, console: Console) -> None:
    """Send the load once a member serves: before that HAProxy could only answer 503."""
    await runner.started.wait()
    while True:  # polled: the inventory has no event to wait on
        if _serving(runner):
            break
        await asyncio.sleep(0.5)
    console.print("the first instance serves: the load goes through HAProxy now", markup=False)
    await load.run()


async def _view(
    runner: daemon.Daemon,
    generator: loadgen.LoadGenerator,
    prepared: host.DemoHost,
    console: Console,
    args: argparse.Namespace,
    load: traffic.HttpLoad | None,
    world: served.ServedWorld | None,
) -> None:
    await runner.started.wait()
    assert runner.http is not None
    assert runner.http.address is not None
    address = f"http://{runner.http.address[0]}:{runner.http.address[1]}"
    banner = f"autoscaler demo on {prepared.kind} ({prepared.uri}) - metrics {address}/metrics - Ctrl-C stops"
    lines = [banner, f"status: {address}/status   explain: {address}/explain/{config.GROUP}"]
    lines.append(f"console: {address}/   (Unlock actions with the token in {runner.http.token_file})")
    assert runner.http.token_file is not None
    enter = ""
    if world is not None:  # the daemon listens inside the namespace: curl from there too
        enter = f"nsenter --net={world.rig.netns_path} "
        lines[1] = f"status: {enter}curl -fsS {address}/status   site: {enter}curl {world.frontend}"
    lines += operator_commands(address, runner.http.token_file, enter)
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)

    def sessions() -> tuple[str, float]:
        return generator.current_day_time().strftime("%H:%M"), generator.sessions()

    def sent() -> tuple[str, float]:
        hours = generator.day_hours()
        rate = config.SERVED_PEAK_RPS * loadgen.office_load(hours)
        return generator.current_day_time().strftime("%H:%M"), rate

    if load is None:
        view = live.DemoView(runner, config.GROUP, sessions, banner)
    else:
        view = live.DemoView(runner, config.GROUP, sent, banner, load_label="requests/s", served=load.rates)
    if args.plain:
        view.force_plain = True
    await view.run(console)


def operator_commands(address: str, token_file: str, enter: str = "") -> list[str]:
    """Ready-to-paste curl lines that pause and resume the demo group (the token is the demo's own).

    `enter` prefixes them when the daemon listens inside the served world's namespace.
    """
    token = Path(token_file).read_text(encoding="utf-8").strip()
    group_url = f"{address}/groups/{config.GROUP}"
    auth = f"-H 'Authorization: Bearer {token}'"
    pause = "# pause: decide, do not act"
    return [
        f'{enter}curl -fsS {auth} -d \'{{"reason":"demo"}}\' {group_url}/pause    {pause}',
        f"{enter}curl -fsS {auth} -X POST {group_url}/resume    # resume",
    ]


async def _remove_domains(prepared: host.DemoHost, workdir: Path) -> None:
    """Destroy the demo group's domains (a test-driver host forgets them on its own)."""
    if prepared.uri.startswith("test:"):
        return
    from autoscaler.targets import kvm, lifecycle

    policy = files.load_file(workdir / "policies" / f"{config.GROUP}.yaml")[0]
    settings = kvm.KvmSettings(stop=lifecycle.StopTimings(shutdown_timeout=2.0))
    target = kvm.KvmTarget(prepared.uri, settings=settings, policies=[policy])
    try:
        await target.start()
        members = await target.inventory(policy.group)
        await target.scale_in(policy, [i.name for i in members.instances])
    finally:
        await target.close()
