"""The few etcd v3 calls coordination needs, over etcd's JSON gateway (`/v3/...`) with aiohttp.

The gateway serves the same API as gRPC on etcd 3.4 and 3.5+, needs no grpcio or protobuf (whose
pins clash between the Python etcd clients), and aiohttp is already the daemon's HTTP client.
What the gateway leaves to us is done here: base64 keys and values, int64 fields as strings,
default fields left out (`succeeded`, `TTL`), and endpoint rotation: a member that refuses, times
out or answers "no leader" (503) is skipped for the next one, so one dead or hung member of three
changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from autoscaler.errors import CoordinationUnavailable


def b64(text: str | bytes) -> str:
    """A key or value as the gateway wants it."""
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def unb64(text: str) -> str:
    """A key or value the gateway returned."""
    return base64.b64decode(text).decode()


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as a range returned it."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def parse(cls, data: dict[str, Any]) -> KeyValue:
        """From the gateway's JSON (missing int fields are 0)."""
        return cls(
            key=unb64(data["key"]),
            value=unb64(data.get("value", "")),
            create_revision=int(data.get("create_revision", 0)),
            mod_revision=int(data.get("mod_revision", 0)),
            lease=int(data.get("lease", 0)),
        )


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether the compare held, and the key-values of the range operations in the branch taken."""

    succeeded: bool
    ranges: list[list[KeyValue]] = field(default_factory=list)
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Auth:
    """How to prove who we are to etcd: TLS material and/or an etcd user."""

    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    username: str | None = None
    password_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for https endpoints (None: system defaults)."""
        if self.tls_ca is None and self.tls_cert is None:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert is not None:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    def password(self) -> str | None:
        """The etcd user's password, re-read each time a token is needed."""
        if self.password_file is None:
            return None
        return Path(self.password_file).read_text(encoding="utf-8").strip()


def put(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    """A put request for a transaction."""
    request: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        request["lease"] = str(lease)
    return {"request_put": request}


def get(key: str) -> dict[str, Any]:
    """A range request (one key) for a transaction."""
    return {"request_range": {"key": b64(key)}}


def created_at(key: str, revision: int) -> dict[str, Any]:
    """A compare: the key's create revision equals `revision` (0: the key does not exist)."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}


class Client:
    """An etcd v3 client over the JSON gateway, trying each endpoint in turn."""

    def __init__(self, endpoints: Sequence[str], timeout: float = 1.0, auth: Auth | None = None) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self.auth = auth or Auth()
        self._next = itertools.cycle(range(len(self.endpoints)))
        self._current = next(self._next)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self.last_error = ""

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.auth.ssl_context() or True, limit=8)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to `/v3/<path>` on one member after another until one answers; else unavailable.

        Every member gets one try per call, starting with the one that answered last.
        """
        problems = []
        for _ in self.endpoints:
            endpoint = self.endpoints[self._current]
            try:
                return await self._post(endpoint, path, body)
            except _Unanswered as exc:
                problems.append(f"{endpoint}: {exc}")
                self._current = next(self._next)
        self.last_error = "; ".join(problems)
        raise CoordinationUnavailable(f"no etcd member answered {path}: {self.last_error}")

    async def _post(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {}
        if self.auth.username is not None:
            headers["Authorization"] = await self._auth_token(endpoint)
        try:
            async with self._http().post(f"{endpoint}/v3/{path}", json=body, headers=headers) as answer:
                data = await answer.json(content_type=None)
                if answer.status == 401 and self.auth.username is not None:
                    self._token = None
                if answer.status >= 500 or answer.status == 401:
                    raise _Unanswered(f"HTTP {answer.status}: {_message(data)}")
                if answer.status >= 400:
                    raise CoordinationUnavailable(f"etcd refused {path}: {_message(data)}")
                return data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            raise _Unanswered(f"{type(exc).__name__}: {exc}") from exc

    async def _auth_token(self, endpoint: str) -> str:
        if self._token is None:
            body = {"name": self.auth.username, "password": self.auth.password()}
            try:
                async with self._http().post(f"{endpoint}/v3/auth/authenticate", json=body) as answer:
                    data = await answer.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
                raise _Unanswered(f"authenticate: {exc}") from exc
            if answer.status != 200 or "token" not in data:
                raise _Unanswered(f"authenticate: HTTP {answer.status}: {_message(data)}")
            self._token = str(data["token"])
        return self._token

    # --- the calls coordination uses ------------------------------------------------------------

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL)."""
        data = await self.call("lease/grant", {"TTL": str(ttl)})
        if data.get("error"):
            raise CoordinationUnavailable(f"lease grant refused: {data['error']}")
        return int(data["ID"]), int(data.get("TTL", 0))

    async def keepalive(self, lease: int) -> int:
        """Renew a lease; the TTL granted, 0 when the lease has expired (the gateway omits it)."""
        data = await self.call("lease/keepalive", {"ID": str(lease)})
        result = data.get("result", data)
        return int(result.get("TTL", 0)) if isinstance(result, dict) else 0

    async def revoke(self, lease: int) -> None:
        """End a lease now; every key attached to it is deleted."""
        await self.call("lease/revoke", {"ID": str(lease)})

    async def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> TxnResult:
        """One transaction; the ranges read in whichever branch ran."""
        body = {"compare": compare, "success": success, "failure": failure or []}
        data = await self.call("kv/txn", body)
        ranges = [
            [KeyValue.parse(kv) for kv in response["response_range"].get("kvs", [])]
            for response in data.get("responses", [])
            if "response_range" in response
        ]
        revision = int(data.get("header", {}).get("revision", 0))
        return TxnResult(bool(data.get("succeeded", False)), ranges, revision)

    async def range(self, key: str) -> KeyValue | None:
        """One key, or None."""
        data = await self.call("kv/range", {"key": b64(key)})
        kvs = data.get("kvs", [])
        return KeyValue.parse(kvs[0]) if kvs else None


class _Unanswered(Exception):
    """This member did not answer usefully; the next one may."""


def _message(data: object) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)
    return str(data)


async def wait_until_answering(client: Client, deadline: float | None) -> None:
    """Return once some member answers (a range of a harmless key); after `deadline` (monotonic), raise."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await client.range("/")
            return
        except CoordinationUnavailable:
            if deadline is not None and loop.time() >= deadline:
                raise
            await asyncio.sleep(0.5)
