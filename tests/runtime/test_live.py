"""The served demo's view: every instance with its lifecycle state and the requests/s it served."""

from __future__ import annotations

from typing import Any, cast

from rich.console import Console

from autoscaler.runtime import daemon, live

FRAME = live.Frame(
    day_time="08:30",
    sessions=4.6,
    current=2,
    ready=1,
    desired=2,
    state="cooldown",
    reason="hold at 2",
    outcome="none",
    members=(("as-webmail-1a2b3c4d", "ready", 2.4), ("as-webmail-5e6f7a8b", "registering", 0.0)),
    failed_rate=0.2,
)


def _view(served: bool) -> live.DemoView:
    runner = cast(daemon.Daemon, cast(Any, None))  # render and line read only the frame
    rates = {"as-webmail-1a2b3c4d": 2.4, "failed": 0.2}
    if not served:
        return live.DemoView(runner, "webmail", lambda: ("08:30", 4.6), "demo")
    return live.DemoView(
        runner, "webmail", lambda: ("08:30", 4.6), "demo", load_label="requests/s", served=lambda: rates
    )


def test_the_plain_line_names_each_instance_its_state_and_rate() -> None:
    line = _view(served=True).line(FRAME)
    assert line.startswith("[08:30] requests/s=5 instances=2 ready=1")
    assert "| served as-webmail-1a2b3c4d:ready:2.4/s as-webmail-5e6f7a8b:registering:0.0/s" in line
    assert line.endswith("failed:0.2/s")


def test_the_panel_lists_the_instances_only_in_the_served_world() -> None:
    console = Console(width=100, record=True)
    console.print(_view(served=True).render(FRAME))
    text = console.export_text()
    assert "instances: requests/s served" in text
    assert "as-webmail-5e6f7a8b  registering" in text
    plain = Console(width=100, record=True)
    plain.print(_view(served=False).render(FRAME))
    assert "requests/s served" not in plain.export_text()
    assert "served" not in _view(served=False).line(FRAME)
