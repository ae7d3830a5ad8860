"""Lifecycle hooks for real: commands run as processes, webhooks posted to a loopback server."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from autoscaler.policy import serving as serving_spec
from autoscaler.serving import hooks

EVENT = hooks.Event("launching", "web", "1a2b3c4d-uuid", "as-web-1a2b3c4d", "qemu:///system", "10.0.0.5", 80)


def hook(**fields: Any) -> serving_spec.Hook:
    return serving_spec.Hook.model_validate({"name": "check", "event": "launching", **fields})


def script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.parametrize(
    ("code", "result", "how"),
    [
        ("import sys; sys.exit(0)", "continue", "decided"),
        ("import sys; sys.exit(1)", "abandon", "decided"),
        ("import sys; sys.exit(3)", "abandon", "default_error"),
    ],
)
async def test_exit_status_decides(code: str, result: str, how: str) -> None:
    outcome = await hooks.run(hook(exec=script(code)), EVENT)
    assert (outcome.result, outcome.how) == (result, how)


async def test_a_command_reads_the_event_on_stdin_and_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    code = (
        "import json, os, sys; e = json.load(sys.stdin);"
        f"open({str(out)!r}, 'w').write(json.dumps([e, os.environ.get('AUTOSCALER_INSTANCE_ID'),"
        " os.environ.get('HOME')]))"
    )
    assert (await hooks.run(hook(exec=script(code)), EVENT)).result == "continue"
    event, env_id, home = json.loads(out.read_text())
    assert event["instance_id"] == env_id == "1a2b3c4d-uuid"
    assert event["event"] == "launching"
    assert event["hook"] == "check"
    assert home is None, "the daemon's environment leaked into the hook"


async def test_a_command_that_outlives_its_timeout_is_killed_and_gets_the_default(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    code = f"import time; time.sleep(5); open({str(marker)!r}, 'w')"
    outcome = await hooks.run(hook(exec=script(code), timeout=0.3, default_result="continue"), EVENT)
    assert (outcome.result, outcome.how) == ("continue", "default_timeout")
    assert not marker.exists()


async def test_a_missing_command_gets_the_default() -> None:
    outcome = await hooks.run(hook(exec=["/nonexistent/hook"]), EVENT)
    assert (outcome.result, outcome.how) == ("abandon", "default_error")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[TestServer, list[web.Request], list[bytes], list[Any]]]:
    """A loopback webhook receiver answering from a script of replies."""
    requests: list[web.Request] = []
    bodies: list[bytes] = []
    replies: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        requests.append(request)
        bodies.append(await request.read())
        status, body = replies.pop(0)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, requests, bodies, replies
    await server.close()


async def test_a_webhook_is_signed_and_its_reply_decides(receiver: Any, tmp_path: Path) -> None:
    server, requests, bodies, replies = receiver
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    replies.append((200, {"result": "ABANDON"}))
    webhook = {"url": str(server.make_url("/hook")), "secret_file": str(secret)}
    outcome = await hooks.run(hook(webhook=webhook), EVENT)
    assert (outcome.result, outcome.how) == ("abandon", "decided")
    signature = requests[0].headers["X-Autoscaler-Signature"]
    assert hooks.verify(bodies[0], b"s3cret", signature)
    assert not hooks.verify(bodies[0] + b" ", b"s3cret", signature)
    assert requests[0].headers["X-Autoscaler-Idempotency-Key"] == "1a2b3c4d-uuid:check:launching"


async def test_a_heartbeat_extends_and_the_next_reply_decides(receiver: Any) -> None:
    server, _requests, bodies, replies = receiver
    replies.extend([(202, {"heartbeat": 0.1}), (202, {"heartbeat": 0.1}), (200, {"result": "continue"})])
    outcome = await hooks.run(hook(webhook={"url": str(server.make_url("/hook"))}, timeout=5), EVENT)
    assert outcome.result == "continue"
    assert [json.loads(b)["attempt"] for b in bodies] == [1, 2, 3]


async def test_a_webhook_error_or_endless_heartbeat_gets_the_default(receiver: Any) -> None:
    server, _requests, _bodies, replies = receiver
    url = str(server.make_url("/hook"))
    replies.append((500, {}))
    failed = await hooks.run(hook(webhook={"url": url}, event="terminating"), EVENT)
    assert (failed.result, failed.how) == ("continue", "default_error")
    replies.extend([(202, {"heartbeat": 0.2})] * 10)
    slow = await hooks.run(hook(webhook={"url": url}, timeout=0.5), EVENT)
    assert (slow.result, slow.how) == ("abandon", "default_timeout")


def test_a_hook_needs_exactly_one_action() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        hook()
    with pytest.raises(ValueError, match="exactly one"):
        hook(exec=["/bin/true"], webhook={"url": "http://127.0.0.1:1/"})
