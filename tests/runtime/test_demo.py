"""`autoscaler demo` runs non-interactively, scales with the replayed office day, and stops cleanly."""

from __future__ import annotations

import asyncio
import subprocess
import sys


async def test_demo_scales_up_with_the_morning_and_stops_after_its_duration() -> None:
    argv = [sys.executable, "-m", "autoscaler", "demo", "--uri", "test", "--duration", "14"]
    argv += ["--day-seconds", "40", "--port", "0", "--plain"]
    process = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "libvirt test driver" in text
    assert "acted: scale up" in text
    assert "daemon_stopped" in text
    sizes = [int(part.split("=")[1]) for part in text.split() if part.startswith("instances=")]
    assert max(sizes) >= 4, text
