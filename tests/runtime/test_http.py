"""The operator API is strict: Bearer scheme only, never an empty token, JSON or 400, 404 for strangers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from autoscaler import settings
from tests.runtime.test_daemon import TOKEN, Running, daemon_running, make_settings


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    made, _policies = make_settings(tmp_path)
    return made


@pytest.fixture
async def running(config: settings.Settings) -> AsyncIterator[Running]:
    async with daemon_running(config) as started:
        yield started


def with_token_file(config: settings.Settings, token_file: str | None) -> settings.Settings:
    return replace(config, http=replace(config.http, token_file=token_file))


@pytest.mark.parametrize("header", [TOKEN, f"Token {TOKEN}", f"Basic {TOKEN}", "Bearer", "Bearer  "])
async def test_only_the_bearer_scheme_authorises(running: Running, header: str) -> None:
    status, _text = await running.post("/groups/web/pause", header)
    assert status == 401
    assert running.handler().paused is None


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  Bearer   {TOKEN} "])
async def test_a_bearer_token_authorises(running: Running, header: str) -> None:
    status, _text = await running.post("/groups/web/pause", header)
    assert status == 200
    assert running.handler().paused == "paused by operator"


async def test_a_wrong_token_is_refused(running: Running) -> None:
    status, _text = await running.post("/groups/web/pause", "Bearer s3cre")
    assert status == 401
    status, _text = await running.post("/groups/web/pause", "")
    assert status == 401
    assert running.handler().paused is None


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
async def test_an_empty_token_file_authorises_no_one(
    config: settings.Settings, tmp_path: Path, content: str
) -> None:
    (tmp_path / "token").write_text(content)
    async with daemon_running(config) as started:
        for header in ("", "Bearer", "Bearer ", 'Bearer ""'):
            status, _text = await started.post("/reload", header)
            assert status == 401, header
        assert (await started.get_json("/status"))["operator_api"] == "disabled: token file empty"


@pytest.mark.parametrize("body", ["{not json", '{"reason": "x"', "\xff\xfe"])
async def test_a_body_that_is_not_json_is_400(running: Running, body: str) -> None:
    status, text = await running.post("/groups/web/pause", data=body.encode("latin-1"))
    assert status == 400
    assert "not valid JSON" in text
    assert running.handler().paused is None


async def test_a_body_that_is_not_an_object_is_400(running: Running) -> None:
    status, text = await running.post("/groups/web/pause", json=["freeze"])
    assert status == 400
    assert "JSON object" in text


@pytest.mark.parametrize("path", ["/groups/web/resume", "/reload"])
async def test_a_bad_body_is_refused_everywhere(running: Running, path: str) -> None:
    status, _text = await running.post(path, data=b"reason=x")
    assert status == 400


async def test_curl_style_form_encoded_json_and_no_body_are_accepted(running: Running) -> None:
    status, _text = await running.post("/groups/web/pause", data=b'{"reason":"maintenance"}')
    assert status == 200
    assert running.handler().paused == "maintenance"
    status, _text = await running.post("/groups/web/resume")
    assert status == 200
    assert running.handler().paused is None


@pytest.mark.parametrize("action", ["pause", "resume"])
async def test_an_unknown_group_is_404(running: Running, action: str) -> None:
    status, text = await running.post(f"/groups/mail/{action}", json={})
    assert status == 404
    assert "mail" in text


async def test_an_unknown_group_is_404_before_the_body_is_judged(running: Running) -> None:
    status, _text = await running.post("/groups/mail/pause", data=b"{")
    assert status == 404


async def test_no_token_file_is_403(config: settings.Settings) -> None:
    async with daemon_running(with_token_file(config, None)) as started:
        status, text = await started.post("/groups/web/pause")
        assert status == 403
        assert "no http.token_file" in text
        assert (await started.get_json("/status"))["operator_api"] == "disabled: no http.token_file"


async def test_an_unreadable_token_file_is_503_and_said_once_at_startup(
    config: settings.Settings, tmp_path: Path
) -> None:
    missing = str(tmp_path / "absent-token")
    with capture_logs() as logs:
        async with daemon_running(with_token_file(config, missing)) as started:
            status, text = await started.post("/groups/web/pause")
            assert status == 503
            assert "unreadable" in text
            status_page = await started.get_json("/status")
            assert status_page["operator_api"] == "disabled: token file unreadable"
    warnings = [e for e in logs if e["event"] == "operator_api_disabled"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["token_file"] == missing


async def test_a_token_file_of_raw_bytes_is_unreadable_not_a_crash(
    config: settings.Settings, tmp_path: Path
) -> None:
    raw = tmp_path / "raw-token"
    raw.write_bytes(b"\xff\xfe\x00\x9c" * 8)  # head -c32 /dev/urandom > token
    async with daemon_running(with_token_file(config, str(raw))) as started:
        status, _text = await started.post("/groups/web/pause")
        assert status == 503
        assert (await started.get_json("/status"))["operator_api"] == "disabled: token file unreadable"


async def test_a_token_file_that_becomes_readable_enables_the_api(
    config: settings.Settings, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.rename(tmp_path / "later")
    async with daemon_running(config) as started:
        assert (await started.get_json("/status"))["operator_api"] == "disabled: token file unreadable"
        (tmp_path / "later").rename(token)
        status, _text = await started.post("/groups/web/pause")
        assert status == 200
        assert (await started.get_json("/status"))["operator_api"] == "enabled"
