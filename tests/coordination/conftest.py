"""One 3-member etcd cluster per test module (each test uses its own key prefix)."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.coordination import rig


@pytest.fixture(scope="module")
def etcd() -> Iterator[rig.EtcdCluster]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-etcd-"))
    try:
        with rig.etcd_cluster(workdir) as cluster:
            yield cluster
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
