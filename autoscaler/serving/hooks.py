"""Lifecycle hooks: an operator's command or webhook that may hold or abandon a launch or termination.

A hook never raises: every failure (a crash, an exit code other than 0 or 1, a timeout, an HTTP
error, an unreadable reply) is its `default_result`, recorded with how it was reached. A command
runs without a shell, the JSON event on stdin and `AUTOSCALER_*` variables in its environment. A
webhook gets the same JSON, signed (`X-Autoscaler-Signature: sha256=<hex HMAC of the body>`) and
keyed (`X-Autoscaler-Idempotency-Key: <instance>:<hook>:<event>`); a 202 reply with
`{"heartbeat": s}` asks to be asked again after s seconds, as long as the timeout allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from autoscaler.policy import serving as serving_spec

CONTINUE = "continue"
ABANDON = "abandon"


@dataclass(frozen=True, slots=True)
class Event:
    """What a hook is told about the member."""

    event: str
    """launching or terminating."""
    group: str
    instance_id: str
    name: str
    host: str
    address: str
    port: int
    reason: str = ""

    def payload(self, hook: serving_spec.Hook, attempt: int, deadline: float) -> dict[str, Any]:
        """The JSON body (and, flattened, the AUTOSCALER_* environment)."""
        return {
            "event": self.event,
            "hook": hook.name,
            "group": self.group,
            "instance_id": self.instance_id,
            "domain": self.name,
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "attempt": attempt,
            "deadline": round(deadline, 3),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """A hook's result and how it was reached (for logs and the metric label)."""

    result: str
    """continue or abandon."""
    how: str
    """decided, default_timeout, default_error."""
    detail: str = ""


def key(hook: serving_spec.Hook, event: Event) -> str:
    """The idempotency key: a hook runs to completion once per (instance, hook, event)."""
    return f"{event.instance_id}:{hook.name}:{event.event}"


async def run(hook: serving_spec.Hook, event: Event) -> Outcome:
    """Run one hook to its result; never raises."""
    deadline = time.time() + hook.timeout
    try:
        async with asyncio.timeout(hook.timeout):
            if hook.webhook is not None:
                return await _post(hook, hook.webhook, event, deadline)
            return await _exec(hook, event, deadline)
    except TimeoutError:
        return Outcome(hook.fallback, "default_timeout", f"no result within {hook.timeout:g}s")


async def _exec(hook: serving_spec.Hook, event: Event, deadline: float) -> Outcome:
    """The command: exit 0 continues, 1 abandons, anything else is the default."""
    payload = event.payload(hook, 1, deadline)
    try:
        process = await asyncio.create_subprocess_exec(
            *hook.exec,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=_environment(payload),
        )
    except OSError as exc:
        return Outcome(hook.fallback, "default_error", f"cannot run {hook.exec[0]}: {exc}")
    try:
        _out, err = await process.communicate(json.dumps(payload).encode())
    except asyncio.CancelledError:  # the timeout: no command outlives its hook
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode == 0:
        return Outcome(CONTINUE, "decided")
    if process.returncode == 1:
        return Outcome(ABANDON, "decided", err.decode(errors="replace").strip()[-200:])
    return Outcome(hook.fallback, "default_error", f"exit status {process.returncode}")


def _environment(payload: Mapping[str, Any]) -> dict[str, str]:
    """PATH and the event as AUTOSCALER_<FIELD>; nothing else of the daemon's environment leaks."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    env.update({f"AUTOSCALER_{k.upper()}": str(v) for k, v in payload.items()})
    return env


async def _post(
    hook: serving_spec.Hook, webhook: serving_spec.Webhook, event: Event, deadline: float
) -> Outcome:
    """POST until a reply decides; 202 + heartbeat waits and asks again."""
    try:
        secret = await asyncio.to_thread(_secret, webhook.secret_file)
    except OSError as exc:
        return Outcome(hook.fallback, "default_error", f"secret_file: {exc}")
    timeout = aiohttp.ClientTimeout(total=hook.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        attempt = 1
        while True:
            body = json.dumps(event.payload(hook, attempt, deadline)).encode()
            headers = {**webhook.headers, **_signed(body, secret, key(hook, event))}
            try:
                async with session.post(webhook.url, data=body, headers=headers) as reply:
                    answer = await _reply(reply)
            except (aiohttp.ClientError, ValueError) as exc:
                return Outcome(hook.fallback, "default_error", f"{type(exc).__name__}: {exc}")
            if isinstance(answer, Outcome):
                decided = answer.result in (CONTINUE, ABANDON)
                return answer if decided else Outcome(hook.fallback, answer.how, answer.detail)
            await asyncio.sleep(min(answer, max(0.0, deadline - time.time())))
            attempt += 1


async def _reply(reply: aiohttp.ClientResponse) -> Outcome | float:
    """A decision, or the seconds to wait before asking again (202 heartbeat)."""
    if not 200 <= reply.status < 300:
        return Outcome("", "default_error", f"HTTP {reply.status}")
    data = await reply.json(content_type=None) if await reply.read() else {}
    if not isinstance(data, dict):
        raise ValueError("reply is not a JSON object")
    result = str(data.get("result", "")).lower()
    if result in (CONTINUE, ABANDON):
        return Outcome(result, "decided")
    if reply.status == 202:
        return max(0.1, float(data.get("heartbeat", 5.0)))
    return Outcome("", "default_error", f"reply without a result: {str(data)[:100]}")


def _signed(body: bytes, secret: bytes, idempotency_key: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Autoscaler-Idempotency-Key": idempotency_key}
    if secret:
        digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
        headers["X-Autoscaler-Signature"] = f"sha256={digest}"
    return headers


def _secret(path: str) -> bytes:
    """The HMAC key (surrounding whitespace stripped); empty when no file is named."""
    if not path:
        return b""
    with open(path, "rb") as file:
        return file.read().strip()


def verify(body: bytes, secret: bytes, signature: str) -> bool:
    """For receivers (and tests): whether a signature header matches the body."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
