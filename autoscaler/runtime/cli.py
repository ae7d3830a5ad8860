"""The `autoscaler run` and `autoscaler demo` sub-commands, registered by `autoscaler.cli`.

`run` is what systemd starts; `demo` builds a self-contained world (load exporter, libvirt host,
policy) around the very same daemon, for a first look on any machine.
"""

from __future__ import annotations

import argparse
import asyncio
import math

from autoscaler import settings
from autoscaler.runtime import daemon
from autoscaler.telemetry import logging as logs


async def _serve(config: settings.Settings, settings_file: str) -> int:
    runner = daemon.Daemon(config, settings_file=settings_file)
    remove = runner.install_signal_handlers()
    try:
        return await runner.run()
    finally:
        remove()


def _run(args: argparse.Namespace) -> int:
    config = settings.load(args.config)
    logs.configure(config.log.level, json=config.log.format == "json")
    return asyncio.run(_serve(config, args.config))


def _demo(args: argparse.Namespace) -> int:
    from autoscaler.demo import run as demo_run

    return demo_run.main(args)


def _positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return seconds


def _demo_uri(text: str) -> str:
    """An argparse type: "test" or a local QEMU libvirt URI (the demo prepares this machine's
    /dev/kvm and a pool in a local temporary folder, so a remote host cannot serve it)."""
    scheme, separator, rest = text.partition("://")
    if text == "test" or (separator and scheme in ("qemu", "qemu+unix") and rest.startswith("/")):
        return text
    raise argparse.ArgumentTypeError(
        f'expected "test" or a local qemu URI such as qemu:///system or qemu:///session, got {text!r}'
    )


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `run` and `demo`."""
    run = commands.add_parser("run", help="run the daemon (what systemd starts)")
    run.add_argument("--config", required=True, help="the daemon's settings file (YAML)")
    run.set_defaults(func=_run)
    demo = commands.add_parser("demo", help="a self-contained demo: load generator, libvirt host, live view")
    demo.add_argument(
        "--duration", type=_positive_seconds, help="stop after this many seconds (default: until Ctrl-C)"
    )
    demo.add_argument(
        "--day-seconds", type=_positive_seconds, default=240.0, help="real seconds per simulated day"
    )
    demo.add_argument(
        "--uri",
        type=_demo_uri,
        help='libvirt URI; "test" for the test driver (default: qemu:///system when usable, else test)',
    )
    demo.add_argument(
        "--mode",
        choices=("auto", "served", "qemu", "test"),
        default="auto",
        help="served: test guests answer HTTP behind HAProxy in a private network namespace (root); "
        "qemu: empty clones on the system libvirt; test: libvirt's test driver "
        "(default auto: served where the machine allows, else qemu, else test)",
    )
    demo.add_argument("--port", type=int, default=9464, help="port of the daemon's /metrics (0: any free)")
    demo.add_argument("--plain", action="store_true", help="log lines instead of the live view")
    demo.set_defaults(func=_demo)
