"""What /status says of calendar windows, remembered between polls until a window opens or closes."""

from __future__ import annotations

from datetime import UTC, datetime

from autoscaler.engine import status
from tests.engine.conftest import make_policy

NIGHTLY = {"name": "nightly", "cron": "0 3 * * *", "duration": "1h", "min": 3}


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_remembered_window_still_opens_and_closes_on_time() -> None:
    policy = make_policy(schedules=[NIGHTLY])
    windows = status.Windows()
    [before] = windows.shown(policy, at("2026-11-25 02:00"))
    assert (before["open"], before["next_opening"]) == (False, at("2026-11-25 03:00"))
    assert windows.shown(policy, at("2026-11-25 02:59:59"))[0]["open"] is False
    [opened] = windows.shown(policy, at("2026-11-25 03:00"))
    assert (opened["open"], opened["closes_at"]) == (True, at("2026-11-25 04:00"))
    assert windows.shown(policy, at("2026-11-25 03:59:59"))[0]["open"] is True
    [closed] = windows.shown(policy, at("2026-11-25 04:00:01"))  # open through its last second
    assert (closed["open"], closed["next_opening"]) == (False, at("2026-11-26 03:00"))
    assert windows.shown(policy, at("2026-11-25 02:30"))[0]["next_opening"] == at(
        "2026-11-25 03:00"
    )  # clock set back


def test_a_new_policy_version_shows_its_own_windows() -> None:
    windows = status.Windows()
    windows.shown(make_policy(schedules=[NIGHTLY]), at("2026-11-25 02:00"))
    later = {**NIGHTLY, "cron": "0 1 * * *"}
    [shown] = windows.shown(make_policy(schedules=[later]), at("2026-11-25 02:00"))
    assert shown["next_opening"] == at("2026-11-26 01:00")
    assert windows.shown(make_policy(), at("2026-11-25 02:00")) == []
