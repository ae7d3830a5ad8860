"""The real libvirtd and Prometheus fixtures are registered once for the session in tests/conftest.py.

`netns_rig` (a private network namespace with its own libvirtd, DHCP network, the test guest and
room for any other service; see autoscaler/demo/netns.py) is registered here, once per session.
"""

import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.integration import netns


@pytest.fixture(scope="session")
def netns_rig() -> Iterator[netns.Rig]:
    """A private network namespace with libvirtd, DHCP and the test guest (see autoscaler/demo/netns.py)."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-netns-"))
    rig = netns.start(workdir)
    try:
        yield rig
    finally:
        rig.stop()
        shutil.rmtree(workdir, ignore_errors=True)
