"""Where every test must run, a skip is a failure: a silent skip would leave `make test` green while
the real libvirtd, QEMU or Prometheus tests never ran.

Tests that need something absent (not root, a missing binary) skip with a reason, which suits a
developer's laptop. CI runs on a machine that has all of it (root, libvirt, QEMU, Prometheus), so
`make pytest` sets AUTOSCALER_REQUIRE_INTEGRATION=1 and each skip then fails with the same reason.
A test marked `may_skip` is the exception: its skip says the machine is shared, not lacking (a
libvirtd that was already running is used but never restarted), and every other test still ran.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from tests.integration.libvirt_env import libvirt_env
from tests.integration.prometheus_env import prometheus_server

__all__ = ["libvirt_env", "prometheus_server"]
# One real libvirtd and one Prometheus per session, shared by every package that needs them
# (tests/integration, tests/faults): a second copy of a session fixture would find the first
# one's libvirtd running, treat it as foreign and skip what only an owned daemon allows.

REQUIRE = "AUTOSCALER_REQUIRE_INTEGRATION"


def _required() -> bool:
    return os.environ.get(REQUIRE) == "1"


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skip gave (pytest keeps it as (file, line, 'Skipped: reason'))."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_instead(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = f"skipped although {REQUIRE}=1 requires every test to run: {_skip_reason(report)}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, object, object]:
    """A skipped test (skip, skipif, or a fixture's skip) fails when every test must run."""
    report = yield
    assert isinstance(report, pytest.TestReport)
    allowed = item.get_closest_marker("may_skip") is not None
    if _required() and report.skipped and not hasattr(report, "wasxfail") and not allowed:
        _fail_instead(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report() -> Generator[None, object, object]:
    """A module that skips as a whole (a module-level skip or importorskip) fails the same way."""
    report = yield
    assert isinstance(report, pytest.CollectReport)
    if _required() and report.skipped:
        _fail_instead(report)
    return report
