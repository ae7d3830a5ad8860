"""One real libvirtd and one real Prometheus server for the whole session, shared by every module.

Registering the fixtures here (not per module) matters: each module-level copy of a session
fixture is a separate instance, and a second copy would find the first one's libvirtd running,
treat it as foreign and skip what only an owned daemon allows (restarting it).
"""

import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.integration import netns
from tests.integration.libvirt_env import libvirt_env
from tests.integration.prometheus_env import prometheus_server

__all__ = ["libvirt_env", "netns_rig", "prometheus_server"]


@pytest.fixture(scope="session")
def netns_rig() -> Iterator[netns.Rig]:
    """A private network namespace with libvirtd, DHCP and the test guest (see tests/integration/netns.py)."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-netns-"))
    rig = netns.Rig.start(workdir)
    try:
        yield rig
    finally:
        rig.stop()
        shutil.rmtree(workdir, ignore_errors=True)
