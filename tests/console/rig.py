"""A real daemon for the console's browser tests: `autoscaler run` over a private test:/// host.

Two groups scale on load served by a small exporter in this process (the daemon scrapes it over
loopback), so the page has members, decisions and history to show. Everything is private: a temporary
directory for the host file, policies, state and token, and ports chosen free by the kernel.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.demo import host

TOKEN = "console-test-token-7f3a"

WEBMAIL = """\
group: webmail
golden: {golden}
template: {template}
pool: {pool}
min: 1
max: 8
evaluation_interval: 1s
warmup: 0s
checks:
  - name: sessions
    source: load
    query: webmail_active_sessions
    strategy: {{kind: per_instance, per_instance: 50, tolerance: 0.05}}
    max_staleness: 10s
scale_up: {{cooldown: 1s}}
scale_down: {{stabilization: 4s, cooldown: 2s}}
schedules:
  - {{name: office-hours, cron: "* * * * *", duration: 2m, min: 2}}
"""

BATCH = """\
group: batch
golden: {golden}
template: {template}
pool: {pool}
min: 1
max: 4
evaluation_interval: 1s
warmup: 0s
checks:
  - name: queue
    source: load
    query: batch_queue_depth
    strategy: {{kind: target_tracking, target: 10, tolerance: 0.1}}
    max_staleness: 10s
scale_up: {{cooldown: 2s}}
scale_down: {{stabilization: 10s, cooldown: 5s}}
schedules:
  - {{name: nightly-batch, cron: "0 2 * * *", timezone: Europe/Paris, duration: 3h, min: 3}}
"""


def sessions(elapsed: float) -> float:
    """Webmail sessions: a morning ramp from 120 to 330, then a gentle swell."""
    return 120.0 + min(elapsed, 20.0) * 10.5 + 25.0 * math.sin(elapsed / 6.0)


def queue_depth(_elapsed: float) -> float:
    """Batch queue depth per ready member (a target-tracking metric)."""
    return 14.0


class Exporter:
    """Serves `webmail_active_sessions` and `batch_queue_depth` on 127.0.0.1 from a thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        started = clock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                elapsed = clock() - started
                body = (
                    "# TYPE webmail_active_sessions gauge\n"
                    f"webmail_active_sessions {sessions(elapsed):.2f}\n"
                    "# TYPE batch_queue_depth gauge\n"
                    f"batch_queue_depth {queue_depth(elapsed):.2f}\n"
                ).encode()
                with contextlib.suppress(ConnectionError):  # the daemon stopped in the middle of a scrape
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="exporter", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def __enter__(self) -> Exporter:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class PrefixProxy:
    """A reverse proxy on 127.0.0.1 that serves the daemon's `/` under `/autoscaler/`, as nginx might."""

    PREFIX = "/autoscaler/"

    def __init__(self, upstream: str) -> None:
        prefix = self.PREFIX

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if not self.path.startswith(prefix):
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                request = urllib.request.Request(
                    upstream + "/" + self.path[len(prefix) :],
                    data=self.rfile.read(length) if length else None,
                    method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() in FORWARDED},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
                        self._reply(answer.status, answer.headers.items(), answer.read())
                except urllib.error.HTTPError as refused:
                    self._reply(refused.code, refused.headers.items(), refused.read())

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                with contextlib.suppress(ConnectionError):
                    self.send_response(status)
                    for key, value in headers:
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.PREFIX}"

    def __enter__(self) -> PrefixProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


FORWARDED = ("authorization", "content-type", "accept")


@dataclass
class Daemon:
    """A running `autoscaler run` and how to reach it."""

    url: str
    process: subprocess.Popen[str]
    log: list[str]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:  # only loopback
            return json.loads(response.read())

    def group(self, name: str) -> dict[str, Any]:
        status = self.get("/status")
        return next(g for g in status["groups"] if g["group"] == name)


def settings_yaml(workdir: Path, uri: str, exporter_url: str) -> str:
    return f"""\
policies: [{workdir / "policies"}]
state_dir: {workdir / "state"}
http: {{listen: 127.0.0.1, port: 0, token_file: {workdir / "token"}}}
sources:
  load: {{kind: exporter, url: "{exporter_url}", timeout: 2s}}
target: {{uris: ["{uri}"], memory_reserve_mib: 512, reconcile_interval: 30s}}
engine: {{jitter: 0s, policy_poll: 1s, query_timeout: 2s, shutdown_grace: 5s, slot_timeout: 10s}}
log: {{level: info, format: json}}
"""


def prepare(workdir: Path, exporter_url: str) -> Path:
    """Host file, template, policies, token and settings under `workdir`; the settings file's path."""
    prepared = host.test_host(workdir)
    policies = workdir / "policies"
    policies.mkdir()
    names = {"golden": prepared.golden, "template": prepared.template, "pool": prepared.pool}
    (policies / "webmail.yaml").write_text(WEBMAIL.format(**names), encoding="utf-8")
    (policies / "batch.yaml").write_text(BATCH.format(**names), encoding="utf-8")
    token = workdir / "token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    token.chmod(0o600)
    config = workdir / "autoscaler.yaml"
    config.write_text(settings_yaml(workdir, prepared.uri, exporter_url), encoding="utf-8")
    return config


def _address(process: subprocess.Popen[str], log: list[str], deadline: float) -> tuple[str, threading.Thread]:
    """Read the daemon's JSON log until it says where it listens; the reader goes on until EOF."""
    assert process.stdout is not None
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            if not found and '"http_listening"' in line:
                found.append(json.loads(line)["address"])
                done.set()
        done.set()

    reader = threading.Thread(target=read, name="daemon-log", daemon=True)
    reader.start()
    if not done.wait(deadline) or not found:
        raise AssertionError("the daemon did not start listening:\n" + "".join(log[-40:]))
    return found[0], reader


@contextlib.contextmanager
def running_daemon(workdir: Path) -> Iterator[Daemon]:
    """The exporter and `python -m autoscaler run` over a private host; stopped (SIGTERM) afterwards."""
    with Exporter() as exporter:
        config = prepare(workdir, exporter.url)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        log: list[str] = []
        reader: threading.Thread | None = None
        try:
            url, reader = _address(process, log, 30.0)
            yield Daemon(url, process, log)
        finally:
            _stop(process, reader)


def _stop(process: subprocess.Popen[str], reader: threading.Thread | None) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if reader is not None:
        reader.join(5)
    assert process.stdout is not None
    process.stdout.close()


def eventually(predicate: Callable[[], object], deadline: float, what: str) -> None:
    """Wait until `predicate()` is true, failing with `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline}s")
        time.sleep(0.1)
