"""The daemon's HTTP face: metrics for Prometheus, probes for systemd and load balancers, status for people.

Read-only endpoints are open (the server binds loopback by default); the ones that change what the
daemon does (pause, resume, reload) need `Authorization: Bearer <token>`, the token read afresh
from a root-only file on each request so that it can be rotated. They are strict: another scheme or
a bare token is 401, an empty token file authorises no one, no token file configured is 403, an
unreadable one 503, an unknown group 404, and a body that is given must be a JSON object (else 400).
It runs on aiohttp's AppRunner inside the daemon's TaskGroup, never `web.run_app`, which would
take over the loop and signals.

    GET  /metrics                  Prometheus text format
    GET  /healthz                  200 while every root task runs and the loop is responsive
    GET  /readyz                   200 once started (settings, target, policies, HTTP) and, when
                                   coordinated, while etcd answers; else 503 with the reason
    GET  /status                   JSON: every group, its members, state and last decision
    GET  /explain/{group}          the last decision as text (?format=json, ?limit=N for more)
    GET  /v1/decisions             JSON journal (?group=, ?limit=)
    GET  /v1/targets               Prometheus http_sd: ready and draining members, [] when none
    POST /groups/{group}/pause     {"reason": "..."}: decide and journal, but do not act
    POST /groups/{group}/resume    (coordinated: stored in etcd for every daemon; 503 if it was not)
    POST /reload                   re-read the policy files now
    GET  /                         the operator's web console (`autoscaler.console`), and its
                                   /console/* files and /v1/groups/{group}/history
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from pathlib import Path
from typing import Any, Protocol

from aiohttp import http_exceptions, web

from autoscaler import explain
from autoscaler.console import routes as console
from autoscaler.engine import handler, journal
from autoscaler.telemetry import metrics as telemetry


class Api(Protocol):
    """What the HTTP layer needs from the daemon."""

    metrics: telemetry.Metrics
    journal: journal.Journal

    def is_ready(self) -> bool:
        """Startup has finished."""
        ...

    def unready_reason(self) -> str:
        """Why the daemon is not ready ("starting", "coordination: etcd unavailable: ...")."""
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

    async def targets(self) -> list[dict[str, Any]]:
        """Prometheus http_sd entries of the members worth scraping."""
        ...


def _unshared(found: handler.GroupHandler, error: str) -> web.Response:
    """503: the pause or resume holds on this daemon only; the acting daemon did not get it."""
    return _json(
        {
            "group": found.group,
            "paused": found.paused,
            "error": f"not stored in etcd, so the acting daemon may not follow it; retry: {error}",
        },
        status=503,
    )


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
        app.router.add_get("/v1/targets", self._targets)
        app.router.add_post("/groups/{group}/pause", self._pause)
        app.router.add_post("/groups/{group}/resume", self._resume)
        app.router.add_post("/reload", self._reload)
        console.Console(self.api).add_routes(app)
        return app

    async def start(self) -> tuple[str, int]:
        """Bind and serve; returns the bound address (the real port when 0 was asked)."""
        _quiet_client_errors()
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
        return web.Response(
            text="ready" if ready else self.api.unready_reason(), status=200 if ready else 503
        )

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

    async def _targets(self, _request: web.Request) -> web.Response:
        """http_sd JSON with Content-Type exactly application/json (Prometheus 2.28.0 refused a charset)."""
        body = json.dumps(await self.api.targets()).encode()
        return web.Response(body=body, content_type="application/json")

    async def _decisions(self, request: web.Request) -> web.Response:
        names = [request.query["group"]] if "group" in request.query else self.api.status()["group_names"]
        limit = _limit(request, 20)
        return _json({n: [e.to_dict() for e in self.api.journal.recent(n, limit)] for n in names})

    # --- mutating -------------------------------------------------------------------------------

    def operator_api(self) -> str:
        """Whether pause, resume and reload can be used, and if not why (for /status and the log)."""
        token, refusal = self._token()
        if refusal is not None:
            return f"disabled: {refusal.reason}"
        return "enabled" if token else "disabled: token file empty"

    def _token(self) -> tuple[str, web.Response | None]:
        """The current token (re-read each time, so it can be rotated), or the refusal instead."""
        if self.token_file is None:
            return "", web.Response(
                text="operator actions are disabled (no http.token_file)\n",
                status=403,
                reason="no http.token_file",
            )
        try:
            return Path(self.token_file).read_text(encoding="utf-8").strip(), None
        except (OSError, UnicodeDecodeError):  # a binary token file is as unusable as a missing one
            return "", web.Response(
                text="token file unreadable\n", status=503, reason="token file unreadable"
            )

    def _authorized(self, request: web.Request) -> web.Response | None:
        """None when the request carries `Authorization: Bearer <the token>`; an empty token never matches."""
        token, refusal = self._token()
        if refusal is not None:
            return refusal
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        given = given.strip()
        bearer = scheme.lower() == "bearer" and bool(given)
        if not token or not bearer or not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(text="unauthorized\n", status=401, headers={"WWW-Authenticate": "Bearer"})
        return None

    async def _admitted(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The request's JSON object body (empty when none) once authorised, else the refusal."""
        refusal = self._authorized(request)
        if refusal is not None:
            return refusal
        if "group" in request.match_info and self.api.group(request.match_info["group"]) is None:
            return web.Response(text=f"no group {request.match_info['group']!r}\n", status=404)
        return await _body(request)

    async def _pause(self, request: web.Request) -> web.Response:
        body = await self._admitted(request)
        if isinstance(body, web.Response):
            return body
        found = self._group(request)
        found.pause(_reason(request, body))
        await found.persist()
        unshared = await found.share_pause()
        found.poke()
        if unshared is not None:
            return _unshared(found, unshared)
        return _json({"group": found.group, "paused": found.paused})

    async def _resume(self, request: web.Request) -> web.Response:
        body = await self._admitted(request)
        if isinstance(body, web.Response):
            return body
        found = self._group(request)
        found.resume()
        await found.persist()
        unshared = await found.share_pause()
        found.poke()
        if unshared is not None:
            return _unshared(found, unshared)
        return _json({"group": found.group, "paused": None, "state": found.shown_state.value})

    def _group(self, request: web.Request) -> handler.GroupHandler:
        found = self.api.group(request.match_info["group"])
        if found is None:  # dropped by a reload while the body was read
            raise web.HTTPNotFound(text=f"no group {request.match_info['group']!r}\n")
        return found

    async def _reload(self, request: web.Request) -> web.Response:
        body = await self._admitted(request)
        if isinstance(body, web.Response):
            return body
        self.api.request_reload()
        return _json({"reload": "requested"}, status=202)


def _limit(request: web.Request, default: int) -> int:
    text = request.query.get("limit", "")
    return max(1, min(int(text), 1000)) if text.isdigit() else default


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    """The JSON object sent (curl -d sends it form-encoded: the content type is not trusted), or a 400."""
    raw = await request.read() if request.can_read_body else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return web.Response(text=f"the request body is not valid JSON: {exc}\n", status=400)
    if not isinstance(body, dict):
        return web.Response(
            text='the request body must be a JSON object, e.g. {"reason": "..."}\n', status=400
        )
    return body


def _reason(request: web.Request, body: dict[str, Any]) -> str:
    given = body.get("reason")
    return (given if isinstance(given, str) else request.query.get("reason", ""))[:200]


class _ClientErrorFilter(logging.Filter):
    """A malformed request (a line too long, bytes that are no HTTP) is the client's error: aiohttp
    answers 400 and would log a traceback; it becomes one line without one."""

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info[1] if record.exc_info else None
        if isinstance(failure, http_exceptions.HttpProcessingError):
            record.msg = "bad_http_request: %s"
            record.args = (str(failure.message)[:200],)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _quiet_client_errors() -> None:
    """Install the filter on aiohttp's server logger once."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientErrorFilter) for f in server_log.filters):
        server_log.addFilter(_ClientErrorFilter())
