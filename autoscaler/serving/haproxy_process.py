"""An HAProxy of our own: the demo's balancer, and the one the benchmarks and tests run on loopback.

`config` renders what every one of them shares (the admin socket at level admin, HTTP defaults,
one frontend on 127.0.0.1) followed by the caller's backends; `command` is the argv that runs it
in the foreground under its master process (`-W`, so SIGUSR2 is a real reload); `wait_answering`
waits until the admin socket answers. `HaproxyProcess` does all three for a process on this
host's network; the served demo spawns the same command inside its namespace.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from autoscaler import errors
from autoscaler.serving.runtime_api import RuntimeApi

FALLBACK_BINARY = "/usr/sbin/haproxy"


class HaproxyFailed(RuntimeError):
    """HAProxy exited, or its admin socket did not answer in time."""


def binary() -> str | None:
    """The haproxy program, None when it is not installed."""
    found = shutil.which("haproxy")
    if found is None and Path(FALLBACK_BINARY).exists():
        return FALLBACK_BINARY
    return found


def backend(name: str, balance: str = "roundrobin") -> str:
    """An empty backend that members join at runtime, health-checked with GET /health."""
    return f"backend {name}\n  balance {balance}\n  option httpchk GET /health\n"


def config(
    admin_socket: str,
    port: int,
    backends: str,
    default_backend: str = "web",
    *,
    connect: str = "2s",
    idle: str = "30s",
    check: str | None = None,
) -> str:
    """The configuration: admin socket, a frontend on 127.0.0.1:`port`, then `backends` (text).

    `connect`, `idle` (client and server) and `check` are HAProxy's timeouts; slow guests under
    TCG want longer ones than loopback servers.
    """
    check_line = f"  timeout check {check}\n" if check is not None else ""
    return (
        f"global\n  stats socket {admin_socket} mode 600 level admin\n  stats timeout 30s\n"
        f"defaults\n  mode http\n  timeout connect {connect}\n"
        f"  timeout client {idle}\n  timeout server {idle}\n{check_line}"
        f"frontend fe\n  bind 127.0.0.1:{port}\n  default_backend {default_backend}\n"
        f"{backends}"
    )


def command(config_path: Path | str, program: str = "haproxy") -> list[str]:
    """The argv that runs HAProxy in the foreground, master and worker (`-W -db`)."""
    return [program, "-W", "-db", "-f", str(config_path)]


async def wait_answering(admin_socket: str, alive: Callable[[], bool], deadline: float = 10.0) -> None:
    """Return once the admin socket answers; HaproxyFailed when the process exits or `deadline` passes."""
    api = RuntimeApi(admin_socket, 2.0)
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        try:
            await api.ask("show backend")
            return
        except errors.BalancerUnreachable as exc:
            if not alive():
                raise HaproxyFailed("haproxy exited before its admin socket answered") from exc
            if loop.time() > end:
                raise HaproxyFailed(f"haproxy's admin socket did not answer within {deadline:g}s") from exc
        await asyncio.sleep(0.05)


class HaproxyProcess:
    """One HAProxy on this host's network: configuration, admin socket and log in `workdir`."""

    def __init__(self, workdir: Path, config_text: str, admin_socket: str) -> None:
        self.workdir = workdir
        self.admin_socket = admin_socket
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(config_text, encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        """Start the process (`start` also waits for its admin socket); HaproxyFailed when not installed."""
        program = binary()
        if program is None:
            raise HaproxyFailed("haproxy is not installed (scripts/install-system-packages.sh)")
        with (self.workdir / "haproxy.log").open("ab") as log:
            self.process = subprocess.Popen(command(self.config, program), stdout=log, stderr=log)

    def alive(self) -> bool:
        """True while the master process runs."""
        return self.process is not None and self.process.poll() is None

    async def start(self, deadline: float = 10.0) -> None:
        """Start it and wait until the admin socket answers."""
        self.spawn()
        try:
            await wait_answering(self.admin_socket, self.alive, deadline)
        except HaproxyFailed:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM (the master stops its worker), SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
