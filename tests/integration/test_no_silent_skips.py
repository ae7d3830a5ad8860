"""`make test` must not stay green while the real-component tests skip: with
AUTOSCALER_REQUIRE_INTEGRATION=1 (the Makefile sets it) every kind of skip fails with its reason."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

SKIPPING = """\
import pytest

@pytest.fixture
def libvirt_host():
    pytest.skip("needs root to start libvirtd")

def test_fixture_skip(libvirt_host):
    pass

@pytest.mark.skipif(True, reason="promtool is absent")
def test_marked_skip():
    pass

def test_inline_skip():
    pytest.skip("the prometheus binary is absent")

@pytest.mark.xfail(reason="a known failure")
def test_expected_failure():
    assert False

def test_runs():
    pass
"""


def _run(directory: pathlib.Path, require: str | None) -> subprocess.CompletedProcess[str]:
    """pytest over `directory`, with the repository's hooks, as a separate process."""
    (directory / "conftest.py").write_text(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AUTOSCALER_REQUIRE_INTEGRATION"}
    env["PYTHONPATH"] = str(REPO)
    if require is not None:
        env["AUTOSCALER_REQUIRE_INTEGRATION"] = require
    command = [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-p", "no:asyncio"]
    command += ["-c", os.devnull, "--rootdir", str(directory), str(directory)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize("require", [None, "0"])
def test_skips_stay_skips_unless_required(tmp_path: pathlib.Path, require: str | None) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    done = _run(tmp_path, require)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 3 skipped, 1 xfailed" in done.stdout


def test_every_skip_fails_with_its_reason_when_required(tmp_path: pathlib.Path) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    done = _run(tmp_path, "1")
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in done.stdout
    for reason in ("needs root to start libvirtd", "promtool is absent", "the prometheus binary is absent"):
        assert f"requires every test to run: {reason}" in done.stdout


def test_a_module_skipped_as_a_whole_fails_when_required(tmp_path: pathlib.Path) -> None:
    (tmp_path / "test_module.py").write_text(
        'import pytest\npytest.skip("needs qemu", allow_module_level=True)\n'
    )
    (tmp_path / "test_other.py").write_text("def test_runs():\n    pass\n")
    assert "1 passed, 1 skipped" in _run(tmp_path, None).stdout
    done = _run(tmp_path, "1")
    assert done.returncode != 0
    assert "requires every test to run: needs qemu" in done.stdout


def test_a_test_marked_may_skip_still_skips_when_required(tmp_path: pathlib.Path) -> None:
    (tmp_path / "test_shared.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.may_skip\n"
        "def test_restart():\n"
        '    pytest.skip("libvirtd was already running and is not ours to restart")\n'
    )
    done = _run(tmp_path, "1")
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
