"""What the HTTP metric sources share: one error translation, TLS options and credentials.

Both the Prometheus API client and the exporter scraper talk HTTP with the same options, and must
fail the same way: everything foreign becomes `errors.SourceUnavailable`, chained to its cause.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from autoscaler import errors


@contextlib.contextmanager
def translated(url: str, payload: str = "response") -> Iterator[None]:
    """Turn foreign exceptions raised while talking to `url` into SourceError subclasses."""
    try:
        yield
    except errors.SourceError:
        raise
    except TimeoutError as exc:
        raise errors.SourceUnavailable(f"{url}: timed out") from exc
    except aiohttp.ClientError as exc:
        raise errors.SourceUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise errors.SourceUnavailable(f"{url}: cannot read credentials: {exc}") from exc
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise errors.SourceUnavailable(f"{url}: malformed {payload}: {exc!r}") from exc


DEFAULT_MAX_BYTES = 8 * 1024 * 1024
"""Largest response body read (settings: limits.response_bytes)."""


async def read_body(response: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    """The response body, read in chunks and refused once it passes `limit` bytes.

    A declared Content-Length above the limit is refused before reading; an undeclared or wrong
    one is caught while reading, so no answer, however large, is ever held whole.
    """
    declared = response.content_length
    if declared is not None and declared > limit:
        raise errors.SourceUnavailable(
            f"{url}: response of {declared} bytes exceeds {limit} (limits.response_bytes)"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise errors.SourceUnavailable(f"{url}: response exceeds {limit} bytes (limits.response_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def tls(tls_ca: str | None, tls_insecure: bool) -> ssl.SSLContext | bool:
    """The `ssl=` argument for aiohttp: a CA-pinned context, no verification, or the default."""
    if tls_insecure:
        return False
    if tls_ca is not None:
        return ssl.create_default_context(cafile=tls_ca)
    return True


def basic_authorization(credentials: tuple[str, str]) -> str:
    """The HTTP Basic `Authorization` value for a (user, password) pair."""
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def bearer_authorization(token_file: str) -> str:
    """The bearer `Authorization` value, read afresh so that a rotated token just works."""
    return "Bearer " + Path(token_file).read_text(encoding="utf-8").strip()
