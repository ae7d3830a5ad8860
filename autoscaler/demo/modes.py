"""Which world the demo runs, and why, decided once from what this machine offers.

`served`: TCG guests from the test image answer HTTP behind HAProxy inside a network namespace the
demo creates (root, QEMU, unshare/nsenter, dnsmasq, HAProxy and Prometheus needed). `qemu`: the
system libvirt clones empty golden images that idle in SeaBIOS (nothing serves). `test`: libvirt's
test driver, anywhere. A pure function of its inputs, so the choice is tested without a machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Mode = Literal["served", "qemu", "test"]
Which = Callable[[str], str | None]
"""Where a program is installed (`shutil.which`), None when it is not."""
MODES: tuple[str, ...] = ("auto", "served", "qemu", "test")
SERVED_PROGRAMS = ("haproxy", "prometheus")
"""Beyond the namespace rig's own programs (autoscaler/demo/netns.py NEEDED)."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The world to run and the banner's reason for it."""

    mode: Mode
    reason: str

    def banner(self) -> str:
        """The line that says which world runs and why."""
        titles = {
            "served": "served: TCG guests answer HTTP behind HAProxy in a private network namespace",
            "qemu": "qemu: empty QEMU clones on this machine's libvirt (no guest serves)",
            "test": "test: libvirt's test driver (an in-memory hypervisor)",
        }
        return f"world: {titles[self.mode]} ({self.reason})"


class ModeUnavailable(Exception):
    """An explicitly requested mode cannot run here: a usage error naming what is missing."""


def choose(
    requested: str,
    uri: str | None,
    rig_missing: list[str],
    which: Which,
) -> Choice:
    """The world for `--mode requested` (auto picks the richest one this machine allows).

    `rig_missing` is what keeps the machine from holding the namespace rig (empty when it can);
    an --uri always means the libvirt worlds, never the served one (it has a private libvirtd).
    """
    missing = rig_missing + [f"program {name}" for name in SERVED_PROGRAMS if which(name) is None]
    if requested == "served":
        if uri is not None:
            raise ModeUnavailable("served runs its own libvirtd in its namespace: drop --uri")
        if missing:
            raise ModeUnavailable(f"served needs {', '.join(missing)}")
        return Choice("served", "asked for")
    if requested == "test" or (uri is not None and uri.startswith("test")):
        return Choice("test", "asked for")
    if requested == "qemu":
        return Choice("qemu", "asked for")
    if uri is not None:
        return Choice("qemu", f"--uri {uri}")
    if not missing:
        return Choice("served", "root, QEMU, dnsmasq, HAProxy and Prometheus are here")
    return Choice("qemu", f"served mode needs {', '.join(missing)}; trying the system libvirt")
