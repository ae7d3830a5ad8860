"""The namespace holder: keeps a rig's namespaces open, and empties them when its owner dies unannounced.

`Rig` runs it as `unshare --net --mount --propagation private python -m autoscaler.demo.holder ...`.
It bind-mounts the rig's private directories, brings `lo` up, prints `up` and then reads its stdin:
a pipe whose writing end only the owner (the demo, or a test session) holds. The kernel closes that
end when the owner exits, however it exits, `kill -9` included. On that end of file the holder
SIGKILLs every process left in its namespaces (libvirtd, virtlogd, QEMU, dnsmasq, HAProxy,
Prometheus: all there because the rig created the namespaces), removes the scratch directory it
was given and exits, which frees the namespaces. An orderly `Rig.stop` cleans up itself and then
kills the holder, which never sees the end of file.

Stdlib only, in its own session (a terminal's Ctrl-C or a kill of the owner's process group does
not reach it), so it outlives any way its owner can end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SWEEP_SECONDS = 20.0
"""How long the holder keeps killing what is left in its namespaces before it gives up."""

Namespaces = tuple[tuple[int, int], tuple[int, int]]
"""(device, inode) of a network and of a mount namespace."""


def namespace_ids(pid: int | str = "self") -> Namespaces:
    """(device, inode) of the network and mount namespaces of process `pid`."""
    net = os.stat(f"/proc/{pid}/ns/net")
    mnt = os.stat(f"/proc/{pid}/ns/mnt")
    return (net.st_dev, net.st_ino), (mnt.st_dev, mnt.st_ino)


def members(namespaces: Namespaces, spare: Sequence[int]) -> Iterator[int]:
    """Pids of the processes in either of `namespaces`, except those in `spare` (and zombies)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spare:
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or a zombie without namespaces
            net, mnt = namespace_ids(entry.name)
            if net == namespaces[0] or mnt == namespaces[1]:
                yield int(entry.name)


def kill_members(namespaces: Namespaces, spare: Sequence[int], deadline: float) -> list[int]:
    """SIGKILL the processes in `namespaces` until none is left or `deadline` s passed; the survivors."""
    end = time.monotonic() + deadline
    while True:
        left = list(members(namespaces, spare))
        if not left or time.monotonic() > end:
            return left
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _bind(pairs: Sequence[str]) -> None:
    for pair in pairs:
        source, target = pair.split(":", 1)
        subprocess.run(["mount", "--bind", source, target], check=True, capture_output=True, text=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, text=True)


def _wait_for_owner_to_go() -> None:
    """Return when stdin reaches its end: the owner exited (or closed it on purpose)."""
    while os.read(0, 4096):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Hold the namespaces until the owner goes, then empty them; 1 when the set-up failed."""
    parser = argparse.ArgumentParser(prog="python -m autoscaler.demo.holder")
    parser.add_argument("--bind", action="append", default=[], metavar="SOURCE:TARGET")
    parser.add_argument("--scratch", type=Path, help="a directory to remove once the namespaces are empty")
    args = parser.parse_args(argv)
    try:
        _bind(args.bind)
    except subprocess.CalledProcessError as exc:
        print(f"{' '.join(exc.cmd)}: {exc.stderr.strip()}", flush=True)
        return 1
    print("up", flush=True)
    _wait_for_owner_to_go()
    survivors = kill_members(namespace_ids(), [os.getpid()], SWEEP_SECONDS)
    if survivors:
        print(f"namespace holder: still running after SIGKILL: {survivors}", file=sys.stderr)
        return 1
    if args.scratch is not None:
        shutil.rmtree(args.scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
