"""`autoscaler demo`: the real daemon in a self-contained world, on any machine, in one command.

It starts the webmail load generator (a time-compressed office day), prepares a libvirt host (the
system QEMU where it works, else libvirt's test driver), writes a policy, and runs the very same
`Daemon` as `autoscaler run`, scraping the generator directly and serving its own /metrics, with
the operator endpoints enabled by a random token (the banner prints curl lines to use). Ctrl-C
(or `--duration`) stops the daemon cleanly, removes the demo's domains and undoes the host setup.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from autoscaler.demo import config, host, loadgen
from autoscaler.policy import files
from autoscaler.runtime import daemon, live
from autoscaler.telemetry import logging as logs

START_HOUR = 6.0
"""The replayed day starts before the morning ramp, so the first minute already shows scaling."""


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
    try:
        return asyncio.run(_demo(args, console))
    except DemoUsageError as exc:
        print(f"autoscaler demo: error: {exc}", file=sys.stderr)
        return 2


async def _prepare(workdir: Path, uri: str | None) -> host.DemoHost:
    """The demo's host; an --uri that cannot be used is a usage error, not a traceback."""
    try:
        return await host.prepare(workdir, uri)
    except (RuntimeError, OSError) as exc:
        if uri is None:
            raise
        reason = " ".join(str(exc).split())
        raise DemoUsageError(f"argument --uri: {uri} cannot be used: {reason}") from exc


async def _demo(args: argparse.Namespace, console: Console) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="autoscaler-demo-"))
    generator: loadgen.LoadGenerator | None = None
    prepared: host.DemoHost | None = None
    try:
        prepared = await _prepare(workdir, args.uri)
        generator = loadgen.LoadGenerator(day_seconds=args.day_seconds, start_hour=START_HOUR)
        exporter_url = await generator.start()
        return await _run_daemon(args, console, workdir, prepared, generator, exporter_url)
    finally:
        if prepared is not None:
            await _remove_domains(prepared, workdir)
            await prepared.release()
        if generator is not None:
            await generator.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _run_daemon(
    args: argparse.Namespace,
    console: Console,
    workdir: Path,
    prepared: host.DemoHost,
    generator: loadgen.LoadGenerator,
    exporter_url: str,
) -> int:
    policies = workdir / "policies"
    policies.mkdir()
    policy_text = config.policy_yaml(prepared.golden, prepared.template, prepared.pool)
    (policies / f"{config.GROUP}.yaml").write_text(policy_text, encoding="utf-8")
    token_file = config.write_token(workdir)
    settings = config.daemon_settings(
        workdir, prepared.uri, exporter_url, args.port, prepared.memory_reserve_mib, token_file
    )
    runner = daemon.Daemon(settings)
    remove_handlers = runner.install_signal_handlers()
    loop = asyncio.get_running_loop()
    timer = loop.call_later(args.duration, runner.request_stop) if args.duration else None
    viewer = asyncio.create_task(_view(runner, generator, prepared, console, args))
    try:
        return await runner.run()
    finally:
        viewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await viewer
        if timer is not None:
            timer.cancel()
        remove_handlers()


async def _view(
    runner: daemon.Daemon,
    generator: loadgen.LoadGenerator,
    prepared: host.DemoHost,
    console: Console,
    args: argparse.Namespace,
) -> None:
    await runner.started.wait()
    assert runner.http is not None
    assert runner.http.address is not None
    address = f"http://{runner.http.address[0]}:{runner.http.address[1]}"
    banner = f"autoscaler demo on {prepared.kind} ({prepared.uri}) - metrics {address}/metrics - Ctrl-C stops"
    lines = [banner, f"status: {address}/status   explain: {address}/explain/{config.GROUP}"]
    lines.append(f"console: {address}/   (Unlock actions with the token in {runner.http.token_file})")
    assert runner.http.token_file is not None
    lines += operator_commands(address, runner.http.token_file)
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)

    def load() -> tuple[str, float]:
        return generator.current_day_time().strftime("%H:%M"), generator.sessions()

    view = live.DemoView(runner, config.GROUP, load, banner)
    if args.plain:
        view.force_plain = True
    await view.run(console)


def operator_commands(address: str, token_file: str) -> list[str]:
    """Ready-to-paste curl lines that pause and resume the demo group (the token is the demo's own)."""
    token = Path(token_file).read_text(encoding="utf-8").strip()
    group_url = f"{address}/groups/{config.GROUP}"
    auth = f"-H 'Authorization: Bearer {token}'"
    return [
        f'curl -fsS {auth} -d \'{{"reason":"demo"}}\' {group_url}/pause    # pause: decide, do not act',
        f"curl -fsS {auth} -X POST {group_url}/resume    # resume",
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
