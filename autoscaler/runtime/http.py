"""The daemon's HTTP face: metrics for Prometheus, probes for systemd and load balancers, status for people.

Read-only endpoints are open (the server binds loopback by default); the ones that change what the
daemon does (pause, resume, reload) need `Authorization: Bearer <token>`, the token read afresh
from a root-only file on each request so that it can be rotated. It runs on aiohttp's AppRunner
inside the daemon's TaskGroup, never `web.run_app`, which would take over the loop and signals.

    GET  /metrics                  Prometheus text format
    GET  /healthz                  200 while every root task runs and the loop is responsive
    GET  /readyz                   200 once started (settings, target, policies, HTTP), else 503
    GET  /status                   JSON: every group, its members, state and last decision
    GET  /explain/{group}          the last decision as text (?format=json, ?limit=N for more)
    GET  /v1/decisions             JSON journal (?group=, ?limit=)
    POST /groups/{group}/pause     {"reason": "..."}: decide and journal, but do not act
    POST /groups/{group}/resume
    POST /reload                   re-read the policy files now
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from autoscaler import explain
from autoscaler.engine import handler, journal
from autoscaler.telemetry import metrics as telemetry


class Api(Protocol):
    """What the HTTP layer needs from the daemon."""

    metrics: telemetry.Metrics
    journal: journal.Journal

    def is_ready(self) -> bool:
        """Startup has finished."""
        ...

    def health(self) -> tuple[bool, str]:
        """Whether the daemon is healthy, and why not."""
        ...

    def status(self) -> dict[str, Any]:
        """The whole daemon as JSON-ready data."""
        ...

    def group(self, name: str) -> handler.GroupHandler | None:
        """The handler of a managed group."""
        ...

    def request_reload(self) -> None:
        """Re-read the policies soon."""
        ...


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=2, default=str), status=status, content_type="application/json"
    )


class HttpServer:
    """Serves the Api on one address until stopped."""

    def __init__(self, api: Api, host: str, port: int, token_file: str | None) -> None:
        self.api = api
        self.host = host
        self.port = port
        self.token_file = token_file
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        app.router.add_get("/explain/{group}", self._explain)
        app.router.add_get("/v1/decisions", self._decisions)
        app.router.add_post("/groups/{group}/pause", self._pause)
        app.router.add_post("/groups/{group}/resume", self._resume)
        app.router.add_post("/reload", self._reload)
        return app

    async def start(self) -> tuple[str, int]:
        """Bind and serve; returns the bound address (the real port when 0 was asked)."""
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.address = (str(host), int(port))
        return self.address

    async def serve(self) -> None:
        """Root task: keep serving until cancelled, then close the listener."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # --- read-only ------------------------------------------------------------------------------

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = self.api.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": telemetry.CONTENT_TYPE})

    async def _healthz(self, _request: web.Request) -> web.Response:
        healthy, why = self.api.health()
        return web.Response(text=why or "ok", status=200 if healthy else 503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready = self.api.is_ready()
        return web.Response(text="ready" if ready else "starting", status=200 if ready else 503)

    async def _status(self, _request: web.Request) -> web.Response:
        return _json(self.api.status())

    async def _explain(self, request: web.Request) -> web.Response:
        name = request.match_info["group"]
        limit = _limit(request, 1)
        entries = self.api.journal.recent(name, limit)
        if self.api.group(name) is None and not entries:
            return web.Response(text=f"no group {name!r}\n", status=404)
        if request.query.get("format") == "json":
            return _json([e.to_dict() for e in entries])
        if not entries:
            return web.Response(text=f"group {name}: not evaluated yet\n")
        text = "\n\n".join(
            f"{explain.to_text(e.decision)}\noutcome: {e.outcome} ({e.state})" for e in entries
        )
        return web.Response(text=text + "\n")

    async def _decisions(self, request: web.Request) -> web.Response:
        names = [request.query["group"]] if "group" in request.query else self.api.status()["group_names"]
        limit = _limit(request, 20)
        return _json({n: [e.to_dict() for e in self.api.journal.recent(n, limit)] for n in names})

    # --- mutating -------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> web.Response | None:
        if self.token_file is None:
            return web.Response(text="operator actions are disabled (no http.token_file)\n", status=403)
        try:
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError:
            return web.Response(text="token file unreadable\n", status=503)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(text="unauthorized\n", status=401, headers={"WWW-Authenticate": "Bearer"})
        return None

    async def _group_or_refusal(self, request: web.Request) -> handler.GroupHandler | web.Response:
        refusal = self._authorized(request)
        if refusal is not None:
            return refusal
        found = self.api.group(request.match_info["group"])
        if found is None:
            return web.Response(text=f"no group {request.match_info['group']!r}\n", status=404)
        return found

    async def _pause(self, request: web.Request) -> web.Response:
        found = await self._group_or_refusal(request)
        if isinstance(found, web.Response):
            return found
        found.pause(await _reason(request))
        await found.persist()
        found.poke()
        return _json({"group": found.group, "paused": found.paused})

    async def _resume(self, request: web.Request) -> web.Response:
        found = await self._group_or_refusal(request)
        if isinstance(found, web.Response):
            return found
        found.resume()
        await found.persist()
        found.poke()
        return _json({"group": found.group, "paused": None, "state": found.shown_state.value})

    async def _reload(self, request: web.Request) -> web.Response:
        refusal = self._authorized(request)
        if refusal is not None:
            return refusal
        self.api.request_reload()
        return _json({"reload": "requested"}, status=202)


def _limit(request: web.Request, default: int) -> int:
    text = request.query.get("limit", "")
    return max(1, min(int(text), 1000)) if text.isdigit() else default


async def _reason(request: web.Request) -> str:
    if request.can_read_body:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = {}
        if isinstance(body, dict) and isinstance(body.get("reason"), str):
            return str(body["reason"])[:200]
    return request.query.get("reason", "")[:200]
