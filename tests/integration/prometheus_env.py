"""A real Prometheus server for integration tests, started on loopback with targets the tests choose.

Use it from a test module (or a conftest.py, to share one server across modules):

    from tests.integration import prometheus_env
    prometheus_server = prometheus_env.prometheus_server      # the session-scoped fixture

    async def test_x(prometheus_server: prometheus_env.PrometheusServer) -> None:
        prometheus_server.set_targets("web", ["127.0.0.1:8123"], {"group": "web"})
        await prometheus_server.wait_for_target("127.0.0.1:8123", health="up")
        ... PrometheusSource(prometheus_server.url, timeout=5) ...

Targets are file_sd JSON files the server re-reads on change (and every second), so tests add and
remove targets while it runs. Every scrape and evaluation interval is 1 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

BINARY = "prometheus"
START_DEADLINE = 60.0

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: test
    file_sd_configs:
      - files: ["{targets}/*.json"]
        refresh_interval: 1s
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """One running Prometheus process with a private data directory and file_sd targets."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.targets_dir = workdir / "targets"
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Write the config and start the server (returns before it is ready; see wait_ready)."""
        config = self.workdir / "prometheus.yml"
        config.write_text(CONFIG.format(targets=self.targets_dir))
        command = [
            BINARY,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, deadline: float = START_DEADLINE) -> None:
        """Block until /-/ready answers 200; fail with the server log when it dies or is too slow."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self._process is not None and self._process.poll() is not None:
                pytest.fail(f"prometheus exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"prometheus not ready after {deadline}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for failure messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def set_targets(self, name: str, targets: Sequence[str], labels: Mapping[str, str] | None = None) -> None:
        """Scrape `targets` (host:port, loopback only) with `labels`; replaces an earlier set `name`."""
        entry = [{"targets": list(targets), "labels": dict(labels or {})}]
        temporary = self.targets_dir / f".{name}.json.tmp"
        temporary.write_text(json.dumps(entry))
        os.replace(temporary, self.targets_dir / f"{name}.json")

    def remove_targets(self, name: str) -> None:
        """Stop scraping the targets of set `name`."""
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)

    async def api(self, path: str, **params: str) -> Any:
        """GET an API path and return its `data` (fails the test on an error answer)."""
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}{path}", params=params) as r:
            body = await r.json()
        assert body["status"] == "success", body
        return body["data"]

    async def wait_for_target(self, target: str, health: str = "up", deadline: float = 30.0) -> None:
        """Wait until the active target `target` (host:port) reports `health` (up, down or unknown)."""
        end = time.monotonic() + deadline
        seen: list[Any] = []
        while time.monotonic() < end:
            data = await self.api("/api/v1/targets", state="active")
            seen = [(t["labels"].get("instance"), t["health"]) for t in data["activeTargets"]]
            if (target, health) in seen:
                return
            await asyncio.sleep(0.2)
        pytest.fail(f"target {target} never became {health}; targets: {seen}\n{self.log_tail()}")


def start_server(workdir: Path) -> PrometheusServer:
    """Start a server in `workdir` and wait until it is ready."""
    if shutil.which(BINARY) is None:
        pytest.skip("the prometheus binary is absent (Debian package: prometheus)")
    server = PrometheusServer(workdir)
    server.start()
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A Prometheus server on 127.0.0.1 for the whole session; tests add their own target sets."""
    server = start_server(tmp_path_factory.mktemp("prometheus"))
    yield server
    server.stop()
