"""PrometheusSource against a real aiohttp server replaying recorded Prometheus API answers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from autoscaler import errors, model
from autoscaler.sources import prometheus

FIXTURES = Path(__file__).parent / "fixtures" / "prometheus"


@dataclasses.dataclass
class RecordedApi:
    """Serves one recorded answer to every request and remembers what was asked."""

    fixture: str = "vector"
    raw: str | None = None
    """Served as is instead of the fixture."""
    status: int = 200
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = dataclasses.field(default_factory=list)

    async def handle(self, request: web.BaseRequest) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append((request.path, form, dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        body = self.raw if self.raw is not None else (FIXTURES / f"{self.fixture}.json").read_text()
        return web.Response(status=self.status, text=body, content_type="application/json")


@pytest.fixture
async def api() -> AsyncIterator[tuple[RecordedApi, str]]:
    recorded = RecordedApi()
    async with RawTestServer(recorded.handle, host="127.0.0.1") as server:
        yield recorded, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def source(api: tuple[RecordedApi, str]) -> AsyncIterator[prometheus.PrometheusSource]:
    src = prometheus.PrometheusSource(api[1], timeout=2.0)
    yield src
    await src.close()


async def test_vector_gives_value_and_sample_timestamp(
    api: tuple[RecordedApi, str], source: prometheus.PrometheusSource
) -> None:
    samples = await source.query('sum(up{group="web"})', at=1700000000.5)
    assert samples == (model.Sample(42.25, 1700000000.5),)
    path, form, _ = api[0].requests[0]
    assert path == "/api/v1/query"
    assert form["query"] == 'sum(up{group="web"})'
    assert float(form["time"]) == 1700000000.5
    assert form["timeout"] == "2000ms"  # Prometheus rejects "2.0s"


async def test_scalar(api: tuple[RecordedApi, str], source: prometheus.PrometheusSource) -> None:
    api[0].fixture = "scalar"
    assert await source.query("scalar(vector(7))", at=1700000000.5) == (model.Sample(7.0, 1700000000.5),)


@pytest.mark.parametrize("fixture", ["vector_empty", "vector_nan", "vector_inf"])
async def test_missing_values_are_empty_never_zero(
    api: tuple[RecordedApi, str], source: prometheus.PrometheusSource, fixture: str
) -> None:
    api[0].fixture = fixture
    assert await source.query("q", at=1.0) == ()


async def test_several_series_where_one_expected_is_a_query_error(
    api: tuple[RecordedApi, str], source: prometheus.PrometheusSource
) -> None:
    api[0].fixture = "vector_several"
    with pytest.raises(errors.QueryError, match="2 series"):
        await source.query("up", at=1.0)


async def test_several_series_allowed_when_not_expecting_one(api: tuple[RecordedApi, str]) -> None:
    api[0].fixture = "vector_several"
    src = prometheus.PrometheusSource(api[1], timeout=2.0, expect_single=False)
    try:
        assert [s.value for s in await src.query("up", at=1.0)] == [1.0, 2.0]
    finally:
        await src.close()


async def test_matrix_drops_nan_points(
    api: tuple[RecordedApi, str], source: prometheus.PrometheusSource
) -> None:
    api[0].fixture = "matrix"
    samples = await source.query_range("q", start=1700000000, end=1700000045, step=15)
    assert [(s.timestamp, s.value) for s in samples] == [
        (1700000000.0, 1.0),
        (1700000030.0, 3.5),
        (1700000045.0, 4.0),
    ]
    path, form, _ = api[0].requests[0]
    assert path == "/api/v1/query_range"
    assert (float(form["start"]), float(form["end"]), float(form["step"])) == (1700000000, 1700000045, 15)


async def test_matrix_several_series_is_a_query_error(
    api: tuple[RecordedApi, str], source: prometheus.PrometheusSource
) -> None:
    api[0].fixture = "matrix_several"
    with pytest.raises(errors.QueryError):
        await source.query_range("q", start=0, end=10, step=5)


@pytest.mark.parametrize(
    ("fixture", "status", "expected"),
    [
        ("bad_data", 400, errors.QueryError),
        ("execution", 422, errors.QueryError),
        ("unavailable", 503, errors.SourceUnavailable),
        ("unavailable", 429, errors.SourceUnavailable),
        ("unavailable", 500, errors.SourceUnavailable),
        ("string", 200, errors.QueryError),
    ],
)
async def test_errors_are_classified(
    api: tuple[RecordedApi, str],
    source: prometheus.PrometheusSource,
    fixture: str,
    status: int,
    expected: type[errors.SourceError],
) -> None:
    api[0].fixture, api[0].status = fixture, status
    with pytest.raises(expected) as caught:
        await source.query("q", at=1.0)
    assert type(caught.value) is expected


async def test_garbage_body_is_unavailable_and_chained(
    api: tuple[RecordedApi, str], source: prometheus.PrometheusSource
) -> None:
    api[0].fixture = "garbage"  # an HTML page from a proxy, with status 200
    with pytest.raises(errors.SourceUnavailable) as caught:
        await source.query("q", at=1.0)
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    ("raw", "status"), [("", 401), ("", 502), ("null", 200), ('"down"', 200), ("[]", 200)]
)
async def test_a_body_that_is_no_api_object_is_unavailable(
    api: tuple[RecordedApi, str], source: prometheus.PrometheusSource, raw: str, status: int
) -> None:
    api[0].raw, api[0].status = raw, status
    with pytest.raises(errors.SourceUnavailable):
        await source.query("q", at=1.0)


async def test_timeout_is_unavailable(api: tuple[RecordedApi, str]) -> None:
    api[0].delay = 1.0
    src = prometheus.PrometheusSource(api[1], timeout=0.1)
    try:
        with pytest.raises(errors.SourceUnavailable, match="timed out") as caught:
            await src.query("q", at=1.0)
        assert isinstance(caught.value.__cause__, TimeoutError)
    finally:
        await src.close()


async def test_connection_refused_is_unavailable(unused_tcp_port: int) -> None:
    src = prometheus.PrometheusSource(f"http://127.0.0.1:{unused_tcp_port}", timeout=2.0)
    try:
        with pytest.raises(errors.SourceUnavailable) as caught:
            await src.query("q", at=1.0)
        assert isinstance(caught.value.__cause__, aiohttp.ClientError)
    finally:
        await src.close()


async def test_bearer_token_is_read_per_request(api: tuple[RecordedApi, str], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    src = prometheus.PrometheusSource(api[1], timeout=2.0, bearer_token_file=str(token))
    try:
        await src.query("q", at=1.0)
        token.write_text("second\n")
        await src.query("q", at=1.0)
    finally:
        await src.close()
    assert [headers["Authorization"] for _, _, headers in api[0].requests] == [
        "Bearer first",
        "Bearer second",
    ]


async def test_missing_token_file_is_unavailable(api: tuple[RecordedApi, str], tmp_path: Path) -> None:
    src = prometheus.PrometheusSource(api[1], timeout=2.0, bearer_token_file=str(tmp_path / "absent"))
    try:
        with pytest.raises(errors.SourceUnavailable, match="credentials"):
            await src.query("q", at=1.0)
    finally:
        await src.close()


async def test_basic_auth(api: tuple[RecordedApi, str]) -> None:
    src = prometheus.PrometheusSource(api[1], timeout=2.0, basic_auth=("alice", "s3cret"))
    try:
        await src.query("q", at=1.0)
    finally:
        await src.close()
    assert api[0].requests[0][2]["Authorization"] == "Basic YWxpY2U6czNjcmV0"


async def test_close_then_reuse_opens_a_new_session(
    api: tuple[RecordedApi, str], source: prometheus.PrometheusSource
) -> None:
    await source.query("q", at=1.0)
    await source.close()
    assert await source.query("q", at=1.0) == (model.Sample(42.25, 1700000000.5),)


def test_parse_data_rejects_nothing_finite() -> None:
    data = {"resultType": "vector", "result": [{"metric": {}, "value": [5, "-Inf"]}]}
    assert prometheus.parse_data(data, expect_single=True, query="q") == ()
