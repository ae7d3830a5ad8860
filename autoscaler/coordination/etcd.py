"""The few etcd v3 calls coordination needs, over etcd's JSON gateway (`/v3/...`) with aiohttp.

The gateway serves the same API as gRPC on etcd 3.4 and 3.5+, needs no grpcio or protobuf (whose
pins clash between the Python etcd clients), and aiohttp is already the daemon's HTTP client.
What the gateway leaves to us is done here: base64 keys and values, int64 fields as strings,
default fields left out (`succeeded`, `TTL`), and endpoint rotation: a member that refuses, times
out or answers "no leader" (503) is skipped for the next one, so one dead or hung member of three
changes nothing. A watch is the gateway's streaming POST (`/v3/watch`): one JSON object per line
for as long as the connection lasts; `watch.py` resumes it across breaks.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
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
class WatchEvent:
    """One change a watch saw: a put, or a delete (whose key-value carries only key and revision)."""

    deleted: bool
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class WatchMessage:
    """One line of a watch stream."""

    revision: int
    """The header's revision (0 when the gateway left it out, as in a cancel)."""
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    """With `canceled`: the oldest revision etcd still has (what was asked for is compacted away)."""
    cancel_reason: str = ""
    events: tuple[WatchEvent, ...] = ()

    @classmethod
    def parse(cls, line: bytes) -> WatchMessage:
        """From one line of the stream; CoordinationUnavailable when it is an error or not JSON."""
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise CoordinationUnavailable(f"watch: not JSON: {line[:200]!r}") from exc
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, dict):
            error = data.get("error", data) if isinstance(data, dict) else data
            raise CoordinationUnavailable(f"watch: {_message(error)}")
        try:
            events = tuple(
                WatchEvent(event.get("type") == "DELETE", KeyValue.parse(event["kv"]))
                for event in result.get("events", [])
            )
            return cls(
                revision=int(result.get("header", {}).get("revision", 0)),
                created=bool(result.get("created", False)),
                canceled=bool(result.get("canceled", False)),
                compact_revision=int(result.get("compact_revision", 0)),
                cancel_reason=str(result.get("cancel_reason", "")),
                events=events,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CoordinationUnavailable(f"watch: unexpected message {line[:200]!r}: {exc!r}") from exc


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


def prefix_end(prefix: str) -> str:
    """The range end that makes a request cover every key starting with `prefix` (base64)."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b64(b"\0")
    raw[-1] += 1
    return b64(bytes(raw))


def created_at(key: str, revision: int) -> dict[str, Any]:
    """A compare: the key's create revision equals `revision` (0: the key does not exist)."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}


class Client:
    """An etcd v3 client over the JSON gateway, trying each endpoint in turn.

    With an etcd user, each member hands out its own token (`/v3/auth/authenticate`; etcd's
    simple tokens are not shared between members and lapse after `--auth-token-ttl` unused), sent
    as the `Authorization` header. A token the member no longer knows (401) is replaced and the
    request retried once on the same member; a password etcd refuses is a configuration error
    named as such, never retried against the other members. The password is never logged.
    """

    def __init__(self, endpoints: Sequence[str], timeout: float = 1.0, auth: Auth | None = None) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self.auth = auth or Auth()
        self._next = itertools.cycle(range(len(self.endpoints)))
        self._current = next(self._next)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[str, str] = {}
        self._authenticating = asyncio.Lock()
        self.authentications = 0
        """How many tokens were asked for (first ones and refreshes)."""
        self.last_error = ""
        self.requests: collections.Counter[str] = collections.Counter()
        """Requests sent, by path (`watch` counts streams opened)."""

    @property
    def endpoint(self) -> str:
        """The member tried first: the one that answered last."""
        return self.endpoints[self._current]

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            try:
                context = self.auth.ssl_context()
            except (OSError, ssl.SSLError) as exc:
                raise CoordinationUnavailable(
                    f"coordination: cannot load the TLS files (tls_ca {self.auth.tls_ca}, tls_cert "
                    f"{self.auth.tls_cert}, tls_key {self.auth.tls_key}): {exc}"
                ) from exc
            connector = aiohttp.TCPConnector(ssl=context or True, limit=8)
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
                return await self._call_member(endpoint, path, body)
            except _Unanswered as exc:
                problems.append(f"{endpoint}: {exc}")
                self._current = next(self._next)
        self.last_error = "; ".join(problems)
        raise CoordinationUnavailable(f"no etcd member answered {path}: {self.last_error}")

    async def _call_member(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One member; with an etcd user, a lapsed token is replaced and the request sent again."""
        if self.auth.username is None:
            return await self._post(endpoint, path, body, None)
        token = await self._token(endpoint)
        try:
            return await self._post(endpoint, path, body, token)
        except _TokenRefused:
            self._tokens.pop(endpoint, None)
        try:
            return await self._post(endpoint, path, body, await self._token(endpoint))
        except _TokenRefused as exc:
            raise _Unanswered(f"a fresh auth token was refused: {exc}") from exc

    async def _post(
        self, endpoint: str, path: str, body: dict[str, Any], token: str | None
    ) -> dict[str, Any]:
        headers = {"Authorization": token} if token is not None else {}
        self.requests[path] += 1
        try:
            async with self._http().post(f"{endpoint}/v3/{path}", json=body, headers=headers) as answer:
                status, data = answer.status, await _content(answer)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Unanswered(_connection_problem(exc)) from exc
        if status == 401 and token is not None:
            raise _TokenRefused(_message(data))
        if status >= 500 or status == 401:
            raise _Unanswered(f"HTTP {status}: {_message(data)}")
        if status >= 400:
            raise CoordinationUnavailable(f"etcd at {endpoint} refused {path}: {_refusal(data)}")
        return data if isinstance(data, dict) else {}

    async def _token(self, endpoint: str) -> str:
        """This member's token for our user, asked for once and shared by concurrent requests."""
        async with self._authenticating:
            token = self._tokens.get(endpoint)
            if token is None:
                token = await self._authenticate(endpoint)
                self._tokens[endpoint] = token
            return token

    async def _authenticate(self, endpoint: str) -> str:
        user, source = self.auth.username, self.auth.password_file
        try:
            password = self.auth.password()
        except (OSError, UnicodeError) as exc:
            raise CoordinationUnavailable(f"coordination: cannot read password_file {source}: {exc}") from exc
        self.authentications += 1
        try:
            async with self._http().post(
                f"{endpoint}/v3/auth/authenticate", json={"name": user, "password": password}
            ) as answer:
                status, data = answer.status, await _content(answer)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Unanswered(f"authenticate: {_connection_problem(exc)}") from exc
        if status == 200 and isinstance(data, dict) and "token" in data:
            return str(data["token"])
        if status >= 500:
            raise _Unanswered(f"authenticate: HTTP {status}: {_message(data)}")
        raise CoordinationUnavailable(
            f"etcd at {endpoint} refused user {user!r} (password from {source}): {_refusal(data)}"
        )

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

    async def watch(
        self, key: str, start_revision: int, *, prefix: bool = False, deletes_only: bool = False
    ) -> AsyncGenerator[WatchMessage, None]:
        """One watch stream on the member that answered last, from `start_revision`, until it breaks.

        The stream has no end of its own: it yields messages until the connection drops (then
        CoordinationUnavailable, and the next member is tried first next time) or the caller stops
        iterating. Only connecting is timed; an idle stream is normal.
        """
        endpoint = self.endpoint
        request: dict[str, Any] = {
            "key": b64(key),
            "start_revision": str(start_revision),
            "progress_notify": True,  # an idle watch still learns the revision (resumes after compaction)
        }
        if prefix:
            request["range_end"] = prefix_end(key)
        if deletes_only:
            request["filters"] = ["NOPUT"]
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=None)
        self.requests["watch"] += 1
        try:
            headers = {"Authorization": await self._token(endpoint)} if self.auth.username else {}
            async with self._http().post(
                f"{endpoint}/v3/watch", json={"create_request": request}, headers=headers, timeout=timeout
            ) as answer:
                if answer.status != 200:
                    if answer.status == 401:
                        self._tokens.pop(endpoint, None)
                    raise _Unanswered(f"HTTP {answer.status}: {_message(await _content(answer))}")
                async for line in _lines(answer):
                    yield WatchMessage.parse(line)
            raise _Unanswered("the member closed the watch stream")
        except (_Unanswered, aiohttp.ClientError, TimeoutError, OSError, CoordinationUnavailable) as exc:
            if self.endpoint == endpoint:
                self._current = next(self._next)
            problem = _connection_problem(exc) if not isinstance(exc, _Unanswered) else str(exc)
            raise CoordinationUnavailable(f"watch on {endpoint}: {problem}") from exc


async def _lines(answer: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The stream's lines, however long (a prefix watch may carry large values)."""
    pending = b""
    async for chunk in answer.content.iter_any():
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line


class _Unanswered(Exception):
    """This member did not answer usefully; the next one may."""


class _TokenRefused(Exception):
    """The member no longer knows our auth token (it lapsed, or another member issued it)."""


async def _content(answer: aiohttp.ClientResponse) -> object:
    """The JSON body, or its text when it is not JSON (the gateway answers some refusals in text)."""
    text = await answer.text()
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def _message(data: object) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)
    return str(data)


GATEWAY_COMMON_NAME = "CommonName of client sending a request against gateway"


def _refusal(data: object) -> str:
    """etcd's reason for a 4xx, with what to do where etcd's own words do not say it."""
    message = _message(data)
    if GATEWAY_COMMON_NAME in message:
        return (
            f"{message} (etcd's JSON gateway refuses client certificates that carry a CommonName "
            "while etcd auth is on: issue the daemon's certificate without a CN, e.g. with only "
            "O= and subjectAltName, and authenticate with username and password_file)"
        )
    return message


def _connection_problem(exc: BaseException) -> str:
    """A short reason for a failed connection; a TLS failure says which setting to look at."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"TLS: the member's certificate was not accepted ({exc.certificate_error}); "
            "is tls_ca the CA that signed it, and is the endpoint's host name or IP in it?"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({exc}); a member with --client-cert-auth needs tls_cert and tls_key"
    return f"{type(exc).__name__}: {exc}"


async def wait_until_answering(client: Client, key: str, deadline: float | None) -> None:
    """Return once some member answers (a range of `key`, which our etcd role may read); after
    `deadline` (monotonic), raise."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await client.range(key)
            return
        except CoordinationUnavailable:
            if deadline is not None and loop.time() >= deadline:
                raise
            await asyncio.sleep(0.5)
