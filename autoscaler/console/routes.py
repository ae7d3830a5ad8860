"""The console's routes on the daemon's HTTP listener: the page, its static files and the group history.

    GET /                            the console page
    GET /console/{path}              its scripts, styles and the vendored chart library
    GET /v1/groups/{group}/history   JSON: the group's recent sizes, load, capacity, forecast and
                                     clone-to-ready times (?since=<unix seconds> for newer points only)

The static files are read from the package once, at startup, and served from memory with their
content type and the security headers; a path that is not one of them is a 404, so nothing else
on the disk can be reached.
"""

from __future__ import annotations

import json
import math
import mimetypes
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Protocol

from aiohttp import web

from autoscaler.engine import history

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""Only the daemon's own files and endpoints: no inline script or style, no eval, no framing."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


class HasHistory(Protocol):
    """A group handler as the console needs it."""

    history: history.History


class Groups(Protocol):
    """What the console needs from the daemon: its groups by name."""

    def group(self, name: str) -> HasHistory | None:
        """The handler of a managed group."""
        ...


def _walk(folder: Traversable, prefix: str = "") -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for entry in folder.iterdir():
        if entry.is_dir():
            found.update(_walk(entry, f"{prefix}{entry.name}/"))
        elif not entry.name.startswith("."):
            found[prefix + entry.name] = entry.read_bytes()
    return found


def static_files() -> dict[str, bytes]:
    """Every file under the package's `static/` folder by its path there, e.g. 'vendor/uPlot.min.css'."""
    return _walk(resources.files(__package__ or "autoscaler.console") / "static")


def content_type(path: str) -> str:
    """The Content-Type of a static file, by its suffix."""
    suffix = path[path.rfind(".") :] if "." in path else ""
    guessed = TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


class Console:
    """Serves the page, its files and the history JSON for `groups`."""

    def __init__(self, groups: Groups) -> None:
        self.groups = groups
        self.files = static_files()

    def add_routes(self, app: web.Application) -> None:
        """Register the console's routes on the daemon's application."""
        app.router.add_get("/", self._index)
        app.router.add_get("/console/{path:.+}", self._static)
        app.router.add_get("/v1/groups/{group}/history", self._history)

    def _file(self, path: str, cache: str) -> web.Response:
        body = self.files.get(path)
        if body is None:
            raise web.HTTPNotFound(text=f"no console file {path!r}\n", headers=SECURITY_HEADERS)
        headers = {**SECURITY_HEADERS, "Cache-Control": cache, "Content-Type": content_type(path)}
        return web.Response(body=body, headers=headers)

    async def _index(self, _request: web.Request) -> web.Response:
        return self._file("index.html", "no-cache")

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["path"], "no-cache")

    async def _history(self, request: web.Request) -> web.Response:
        name = request.match_info["group"]
        found = self.groups.group(name)
        if found is None:
            return web.Response(text=f"no group {name!r}\n", status=404, headers=SECURITY_HEADERS)
        data = {"group": name, **found.history.to_dict(_since(request))}
        return web.Response(
            text=json.dumps(data),
            content_type="application/json",
            headers=SECURITY_HEADERS,
        )


def _since(request: web.Request) -> float | None:
    try:
        since = float(request.query.get("since", "nan"))
    except ValueError:
        return None
    return since if math.isfinite(since) else None
