"""A demo killed with kill -9 leaves nothing behind: its namespace holder empties the namespace.

The part that matters is the rig (autoscaler/demo/netns.py), which the served demo owns: a process
starts one with a running guest (libvirtd, virtlogd, dnsmasq, QEMU inside), is SIGKILLed, and then
no process may remain in its namespaces and its work directory must be gone.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import pytest

from autoscaler.demo import holder, netns

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.slow]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _names(pids: list[int]) -> list[str]:
    names: list[str] = []
    for pid in pids:
        try:
            names.append(pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
        except OSError:
            continue
    return [os.path.basename(name) for name in names]


def _wait_until(check: Callable[[], bool], deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_a_killed_owner_leaves_no_process_and_no_directory() -> None:
    missing = netns.missing_parts()
    if missing:
        pytest.skip(f"the namespace rig needs {', '.join(missing)}")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="as-killed-owner-"))
    argv = [sys.executable, "-m", "tests.demo.rig_owner", str(scratch)]
    namespaces = None
    try:
        with subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as owner:
            namespaces = _started(owner)
            owner.send_signal(signal.SIGKILL)
        inside = _names(list(holder.members(namespaces, [])))

        def emptied() -> bool:
            return not list(holder.members(namespaces, [])) and not scratch.exists()

        assert _wait_until(emptied, 30.0), f"left behind: {inside} {list(scratch.glob('*'))}"
    finally:
        if namespaces is not None:  # what the test created, should the holder have failed
            holder.kill_members(namespaces, [], deadline=10.0)
        shutil.rmtree(scratch, ignore_errors=True)


def _started(owner: subprocess.Popen[str]) -> holder.Namespaces:
    """The rig's namespaces once its owner says it runs a guest, checked to hold every daemon."""
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line, owner.communicate(timeout=30)[1][-3000:]
    holder_pid = int(json.loads(line)["netns"].split("/")[2])
    namespaces = holder.namespace_ids(holder_pid)
    inside = _names(list(holder.members(namespaces, [holder_pid])))
    assert {"libvirtd", "virtlogd", "dnsmasq", "qemu-system-x86_64"} <= set(inside), inside
    return namespaces
