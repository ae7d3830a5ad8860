"""`autoscaler demo --mode served` for real: test guests behind HAProxy serve the replayed day, then all goes.

The demo makes its own namespace rig (the same `autoscaler.demo.netns.Rig` the other integration
tests use), so this needs root and the rig's programs; it runs until the plain view shows two
instances serving, is stopped with Ctrl-C (SIGINT) as a user would, and must then have served
requests from more than one guest (its closing summary counts them by the hostname each answer
names) and leave nothing behind: no QEMU, libvirtd or namespace holder, no work directory.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from autoscaler.demo import netns

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.slow]
DEMO = [sys.executable, "-m", "autoscaler", "demo", "--mode", "served", "--plain", "--port", "0"]
SERVING = re.compile(r"(as-webmail-[0-9a-f]{8}):ready:(\d+\.\d)/s")


def _serving_members(line: str) -> set[str]:
    """Members a plain view line shows ready and answering requests."""
    return {name for name, rate in SERVING.findall(line) if float(rate) > 0}


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]}")
    return found


async def test_served_demo_guests_answer_through_haproxy_and_everything_goes_on_ctrl_c() -> None:
    missing = netns.missing_parts()
    if missing:
        pytest.skip(f"the served demo needs {', '.join(missing)}")
    argv = [*DEMO, "--duration", "150", "--day-seconds", "60"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(80):
            while line := (await process.stdout.readline()).decode():
                seen.append(line.rstrip("\n"))
                if len(_serving_members(line)) >= 2:
                    break
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(40):
            rest, _ = await process.communicate()
        seen += rest.decode().splitlines()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = "\n".join(line for line in seen if not line.startswith("{"))
    assert process.returncode == 0, text[-4000:]
    assert any(line.startswith("world: served:") for line in seen), text[-4000:]
    summary = next(line for line in seen if line.startswith("served by instance: "))
    counts = dict(re.findall(r"(as-webmail-[0-9a-f]{8})=(\d+)", summary))
    assert len([n for n in counts.values() if int(n) > 0]) >= 2, summary
    workdir = re.search(r"socket=(/tmp/autoscaler-demo-[^/]+)/", text)
    holder = re.search(r"nsenter --net=/proc/(\d+)/ns/net", text)
    assert workdir is not None, text[-4000:]
    assert holder is not None, text[-4000:]
    assert _left_behind(workdir.group(1), holder.group(1)) == []


def _left_behind(workdir: str, holder: str) -> list[str]:
    """The demo's work directory, processes naming it, and its namespace holder, if any remain."""
    left = _processes_naming(workdir)
    if pathlib.Path(workdir).exists():
        left.append(f"the directory {workdir}")
    status = pathlib.Path(f"/proc/{holder}/status")
    if status.exists() and "State:\tZ" not in status.read_text():
        left.append(f"the namespace holder {holder}")
    return left
