"""The systemd unit verifies cleanly, stays well sandboxed, and its sysusers/tmpfiles snippets apply.

No systemd runs as PID 1 here, so everything works offline: `systemd-analyze verify` on a copy
whose ExecStart points at a binary that exists, `systemd-analyze security --offline=true`, and
`systemd-sysusers`/`systemd-tmpfiles` against a temporary --root.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SERVICE = UNITS / "autoscaler.service"
EXEC_START = "/usr/bin/autoscaler run --config /etc/autoscaler/autoscaler.yaml"
MAX_EXPOSURE = 4.0

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent (Debian package: systemd)"
)


def run(*command: str, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    data = stdin.read_text() if stdin else None
    return subprocess.run(command, input=data, capture_output=True, text=True, check=False, timeout=120)


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at /bin/true (the program is not installed here)."""
    text = SERVICE.read_text()
    assert f"ExecStart={EXEC_START}\n" in text
    copy = tmp_path / SERVICE.name
    copy.write_text(text.replace("/usr/bin/autoscaler", "/bin/true"))
    return copy


def directives() -> dict[str, list[str]]:
    """Every Key=value of the [Service] section, repeated keys kept in order."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in SERVICE.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#") and section == "Service":
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@needs_analyze
def test_verify_is_clean(tmp_path: Path) -> None:
    # the man page named by Documentation= is checked where it is installed (tests/install)
    result = run("systemd-analyze", "verify", "--man=no", str(runnable_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    broken = runnable_copy(tmp_path)
    broken.write_text(broken.read_text().replace("[Service]\n", "[Service]\nRestartt=always\n"))
    result = run("systemd-analyze", "verify", "--man=no", str(broken))
    assert "Unknown key" in result.stderr


@needs_analyze
def test_security_exposure_is_ok_or_better(tmp_path: Path) -> None:
    result = run("systemd-analyze", "security", "--offline=true", str(runnable_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:]
    score, rating = float(match[1]), match[2]
    assert score <= MAX_EXPOSURE, result.stdout
    assert rating in ("SAFE", "OK")


def test_service_contract() -> None:
    found = directives()
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": [EXEC_START],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Restart": ["on-failure"],
        "User": ["autoscaler"],
        "SupplementaryGroups": ["libvirt"],
        "StateDirectory": ["autoscaler"],
        "ConfigurationDirectory": ["autoscaler"],
        "CapabilityBoundingSet": [""],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "MemoryDenyWriteExecute": ["yes"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
    }
    for key, value in expected.items():
        assert found.get(key) == value, key
    assert "WatchdogSec" in found
    assert found["SystemCallFilter"]


def test_stop_timeout_covers_the_daemon_hard_deadline() -> None:
    """shutdown_grace (60 s) + 15 s hard exit must end before systemd's SIGKILL."""
    found = directives()
    assert int(found["TimeoutStopSec"][0].removesuffix("s")) > 60 + 15


def test_unit_parses_as_ini() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(SERVICE.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is absent")
def test_sysusers_and_tmpfiles_apply_to_a_fresh_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    users = run("systemd-sysusers", f"--root={root}", "-", stdin=UNITS / "autoscaler.sysusers.conf")
    assert users.returncode == 0, users.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    assert passwd["autoscaler"][6] == "/usr/sbin/nologin"
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    assert "autoscaler" in groups["libvirt"][3].split(",")

    files = run(
        "systemd-tmpfiles", f"--root={root}", "--create", "-", stdin=UNITS / "autoscaler.tmpfiles.conf"
    )
    assert files.returncode == 0, files.stderr
    state = (root / "var/lib/autoscaler").stat()
    assert (state.st_uid, state.st_mode & 0o777) == (int(passwd["autoscaler"][2]), 0o750)
    policies = (root / "etc/autoscaler/policies").stat()
    assert (policies.st_uid, policies.st_gid) == (0, int(groups["autoscaler"][2]))
