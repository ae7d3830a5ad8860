"""etcd unreachable at start: a clear error (exit 1, endpoints named) or a wait (unready), per setting."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from autoscaler import coordination
from autoscaler.settings import CoordinationSettings
from tests.coordination import rig


def _dead_endpoints() -> list[str]:
    return [f"http://127.0.0.1:{port}" for port in rig.free_ports(2)]


def test_fail_mode_exits_with_the_endpoints_named(tmp_path: pathlib.Path) -> None:
    dead = _dead_endpoints()
    config = tmp_path / "autoscaler.yaml"
    config.write_text(
        f"policies: []\nstate_dir: {tmp_path}\nhttp: {{port: 0}}\ntarget: {{uris: ['test:///default']}}\n"
        f"coordination: {{endpoints: [{', '.join(dead)}],\n"
        "  on_unreachable_at_start: fail, start_timeout: 1s}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "on_unreachable_at_start: fail" in done.stdout + done.stderr
    assert dead[0] in done.stdout + done.stderr


async def test_wait_mode_starts_unready_and_never_acts() -> None:
    waiting = coordination.Coordinator(CoordinationSettings(endpoints=tuple(_dead_endpoints())))
    await waiting.start()
    try:
        assert waiting.unready() == "coordination: waiting for etcd to answer"
        assert waiting.hold() == "standby"
        assert not waiting.acting()
    finally:
        await waiting.close()
