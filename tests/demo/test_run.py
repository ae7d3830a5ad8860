"""`autoscaler demo` as a user meets it: bad options are one-line usage errors, the curl lines work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

DEMO = [sys.executable, "-m", "autoscaler", "demo"]


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        (["--day-seconds", "0"], "--day-seconds"),
        (["--day-seconds", "-5"], "--day-seconds"),
        (["--day-seconds", "nan"], "--day-seconds"),
        (["--duration", "0"], "--duration"),
        (["--duration", "-1"], "--duration"),
        (["--duration", "soon"], "--duration"),
        (["--uri", "bogus"], "--uri"),
        (["--uri", "xen:///system"], "--uri"),
        (["--uri", "qemu+unix:///system?socket=/nonexistent/libvirt-sock"], "--uri"),
        (["--uri", "qemu+ssh://root@kvm2/system"], "--uri"),  # the demo prepares this machine only
        (["--mode", "served", "--uri", "test"], "--mode"),  # served runs its own libvirtd
        (["--mode", "bogus"], "--mode"),
    ],
)
async def test_unusable_options_are_a_one_line_usage_error(options: list[str], argument: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *DEMO, *options, "--port", "0", "--plain", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(60):
        _out, err = await process.communicate()
    text = err.decode()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if "error:" in line]
    assert len(errors) == 1, text
    assert errors[0].startswith(f"autoscaler demo: error: argument {argument}"), text


async def lines_of(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    while line := await stream.readline():
        yield line.decode().rstrip("\n")


async def shell(command: str) -> str:
    """Run a line from the banner exactly as pasted into a shell; its stdout."""
    process = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_banner_curl_lines_pause_and_resume_the_demo_group() -> None:
    env = {**os.environ, "COLUMNS": "40"}  # a narrow pipe must not cut a URL or a command
    env.pop("NOTIFY_SOCKET", None)
    argv = [*DEMO, "--uri", "test", "--duration", "60", "--day-seconds", "40", "--port", "0", "--plain"]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            commands: dict[str, str] = {}
            async for line in lines_of(process.stdout):
                seen.append(line)
                if line.startswith("curl "):
                    commands["pause" if "/pause" in line else "resume"] = line
                if len(commands) == 2:
                    break
            banners = [line for line in seen if line.startswith("autoscaler demo on")]
            assert len(banners) == 1, seen
            assert banners[0].endswith("/metrics - Ctrl-C stops"), seen
            assert any(line.startswith("status: http://") and "/explain/webmail" in line for line in seen)

            paused = json.loads(await shell(commands["pause"]))
            assert paused == {"group": "webmail", "paused": "demo"}
            async for line in lines_of(process.stdout):
                seen.append(line)
                if "state=paused" in line:
                    break
            resumed = json.loads(await shell(commands["resume"]))
            assert resumed["paused"] is None

            process.send_signal(signal.SIGINT)
            async for line in lines_of(process.stdout):
                seen.append(line)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "Bearer" in commands["pause"]
    assert "daemon_stopped" in "\n".join(seen)
