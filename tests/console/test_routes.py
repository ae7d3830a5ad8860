"""The console's routes on the daemon's own listener: page and files with their headers, the history JSON."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autoscaler.console import routes
from tests import fakes
from tests.runtime.test_daemon import Running, daemon_running, fake_target, make_settings


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    config, _policies = make_settings(tmp_path)
    source = fakes.FakeMetricSource(values={"load": 45.0})
    async with daemon_running(config, target=fake_target(2), source=source) as started:
        yield started


async def get(running: Running, path: str) -> tuple[int, dict[str, str], bytes]:
    async with running.http.get(running.url + path) as response:
        return response.status, dict(response.headers), await response.read()


async def test_the_page_is_served_at_the_root_with_a_strict_policy(running: Running) -> None:
    status, headers, body = await get(running, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b'src="console/console.js"' in body


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/console/vendor/uPlot.LICENSE.txt", "text/plain"),
        ("/console/favicon.svg", "image/svg+xml"),
    ],
)
async def test_the_files_the_page_uses_are_served_with_their_type(
    running: Running, path: str, kind: str
) -> None:
    status, headers, body = await get(running, path)
    assert status == 200
    assert headers["Content-Type"].startswith(kind)
    assert body


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/../routes.py", "/console/%2e%2e/routes.py"])
async def test_nothing_but_the_shipped_files_is_reachable(running: Running, path: str) -> None:
    status, _headers, _body = await get(running, path)
    assert status == 404


async def test_every_page_file_is_referenced_and_every_reference_exists() -> None:
    shipped = routes.static_files()
    page = shipped["index.html"].decode()
    for name in ("console.js", "console.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
        assert f'"console/{name}"' in page
    assert "MIT" in shipped["vendor/uPlot.LICENSE.txt"].decode()


def test_the_page_asks_only_paths_relative_to_itself() -> None:
    """So that a reverse proxy can serve the console under a prefix (/autoscaler/ -> the daemon's /)."""
    shipped = routes.static_files()
    page = shipped["index.html"].decode()
    script = shipped["console.js"].decode()
    assert not re.findall(r'(?:href|src)="/', page)
    assert not re.findall(r'(?:getJSON|operate|fetch)\("/', script)
    assert '"v1/groups/"' in script


async def test_the_history_of_a_group_is_served_as_columns(running: Running) -> None:
    await fakes.eventually(lambda: len(running.handler().history.points) >= 2)
    data = await running.get_json("/v1/groups/web/history")
    points = data["points"]
    assert isinstance(points, dict)
    assert len(points["at"]) >= 2
    assert points["load"][-1] == 45.0
    assert data["basis"] == {"check": "load", "kind": "per_instance", "per_member": 10.0}
    newest = points["at"][-1]
    since = await running.get_json(f"/v1/groups/web/history?since={newest}")
    assert since["points"]["at"] == []  # type: ignore[index]
    status, _headers, _body = await get(running, "/v1/groups/nope/history")
    assert status == 404
