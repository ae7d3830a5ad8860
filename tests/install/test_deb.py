"""`make deb` builds a package that installs like a service: dpkg puts it into a scratch root
(maintainer scripts run against that root through DPKG_ROOT), and the installed program, unit,
man pages and completion then work from their installed paths.

The installed files name absolute paths (/usr/bin/autoscaler, the virtualenv's own python), so
the checks run in a private mount namespace where the scratch root's /usr is laid over the real
one (overlayfs): the host's python3.11 and libvirt0 below, the package on top, nothing copied.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_VERBS = ("start", "restart", "try-restart", "reload-or-restart", "enable", "reenable")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root and overlay mounts need root"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("dpkg-deb", "dpkg-shlibdeps", "unshare", "systemd-analyze")),
        reason="dpkg-dev, util-linux or systemd is absent",
    ),
]


def run(*command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600, **kwargs)  # type: ignore[call-overload]
    assert isinstance(result, subprocess.CompletedProcess)
    return result


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package, built by `make deb` (uncompressed: compression is not what is tested here)."""
    out = tmp_path_factory.mktemp("deb")
    result = run("make", "--no-print-directory", "deb", "DEB_COMPRESSION=none", f"DEB_OUT={out}", cwd=ROOT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (package,) = out.glob("autoscaler_*.deb")
    return package


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """systemctl and friends that only record how they were called, first in the scripts' PATH."""
    directory = tmp_path_factory.mktemp("shims")
    tools = (
        "systemctl",
        "deb-systemd-invoke",
        "invoke-rc.d",
        "service",
        "systemd-sysusers",
        "systemd-tmpfiles",
    )
    for tool in tools:
        shim = directory / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{directory}/calls"\n')
        shim.chmod(0o755)
    return directory


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --force-depends: the scratch root's dpkg database knows none of the host's packages
    # --force-unsafe-io: no fsync per file; a scratch root need not survive a power cut
    command = (
        "dpkg",
        f"--root={root}",
        "--force-script-chrootless",
        "--force-depends",
        "--force-unsafe-io",
        "--log=/dev/null",
    )
    result = run(*command, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def scratch_root(path: Path) -> Path:
    for directory in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"):
        (path / directory).mkdir(parents=True)
    (path / "var/lib/dpkg/status").touch()
    return path


EDIT = "# edited by the operator\n"


@pytest.fixture(scope="module")
def tokens(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A scratch root where the package was installed, its settings edited, then upgraded (the
    same package again: postinst configure with the old version): the root and the operator
    token before and after the upgrade."""
    target = scratch_root(tmp_path_factory.mktemp("root"))
    dpkg(target, "--install", str(deb))
    settings = target / "etc/autoscaler/autoscaler.yaml"
    settings.write_text(settings.read_text() + EDIT)
    before = (target / "etc/autoscaler/api-token").read_text()
    dpkg(target, "--install", str(deb))
    return target, before, (target / "etc/autoscaler/api-token").read_text()


@pytest.fixture(scope="module")
def root(tokens: tuple[Path, str, str]) -> Path:
    return tokens[0]


def inside(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace where root's /usr lies over the real /usr."""
    mount = f"mount -t overlay overlay -o lowerdir={root}/usr:/usr /usr"
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "MANWIDTH": "80", "R": str(root)}
    return run("unshare", "--mount", "sh", "-ec", f"{mount}\n{script}", env=env, cwd="/")


def test_dpkg_installs_program_unit_and_conffiles(root: Path) -> None:
    status = run("dpkg-query", f"--root={root}", "-W", "-f=${Status} ${Conffiles}", "autoscaler")
    assert status.stdout.startswith("install ok installed"), status.stdout + status.stderr
    for conffile in ("/etc/autoscaler/autoscaler.yaml", "/etc/autoscaler/examples/webmail.yaml"):
        assert f" {conffile} " in status.stdout
    assert os.readlink(root / "usr/bin/autoscaler") == "../lib/autoscaler/bin/autoscaler"
    for installed in (
        "usr/lib/systemd/system/autoscaler.service",
        "usr/lib/sysusers.d/autoscaler.conf",
        "usr/lib/tmpfiles.d/autoscaler.conf",
        "usr/share/man/man1/autoscaler.1.gz",
        "usr/share/man/man1/autoscaler-check.1.gz",
        "usr/share/bash-completion/completions/autoscaler",
        "usr/share/doc/autoscaler/copyright",
    ):
        assert (root / installed).is_file(), installed


def test_depends_on_the_interpreter_and_libvirt(deb: Path) -> None:
    depends = run("dpkg-deb", "--field", str(deb), "Depends").stdout
    names = {item.split()[0] for item in depends.split(", ")}
    assert {"python3.11", "libvirt0", "systemd", "libc6"} <= names, depends


def test_maintainer_scripts_create_the_user_and_directories(root: Path) -> None:
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    uid, gid = int(passwd["autoscaler"][2]), int(groups["autoscaler"][2])
    assert "autoscaler" in groups["libvirt"][3].split(",")
    state = (root / "var/lib/autoscaler").stat()
    assert (state.st_uid, state.st_mode & 0o777) == (uid, 0o750)
    config = (root / "etc/autoscaler").stat()
    assert (config.st_uid, config.st_gid, config.st_mode & 0o777) == (0, gid, 0o750)
    token = root / "etc/autoscaler/api-token"
    assert (token.stat().st_gid, token.stat().st_mode & 0o777) == (gid, 0o640)
    assert len(token.read_text().strip()) >= 40


LIVE_SYSTEM = """
mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system
mount -t tmpfs tmpfs "$W" && mkdir "$W/upper" "$W/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$W/upper,workdir=$W/work" /etc
grep -q '^autoscaler:' /etc/group || echo 'autoscaler:x:64999:' >> /etc/group
mkdir -p /etc/autoscaler
export PATH="$SHIMS:$PATH"
sh "$SCRIPTS/postinst" configure ''
sh "$SCRIPTS/prerm" upgrade 0.1.0
sh "$SCRIPTS/postinst" configure 0.0.9
sh "$SCRIPTS/prerm" remove
sh "$SCRIPTS/postrm" remove
"""


def test_on_a_live_system_scripts_reload_systemd_but_never_start_the_service(
    root: Path, shims: Path, tmp_path: Path
) -> None:
    """The scripts' systemd branch, run for real with every systemd tool recording its calls:
    /run and /etc are private tmpfs/overlay mounts, so nothing of the host changes."""
    (tmp_path / "w").mkdir()
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "W": str(tmp_path / "w"),
        "SHIMS": str(shims),
        "SCRIPTS": str(ROOT / "pkg/debian"),
    }
    result = run("unshare", "--mount", "sh", "-ec", LIVE_SYSTEM, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (shims / "calls").read_text().splitlines()
    assert "systemd-sysusers autoscaler.conf" in calls
    assert "systemctl daemon-reload" in calls
    assert "systemctl stop autoscaler.service" in calls  # on removal only: its program goes away
    started = [line for line in calls if set(line.split()[1:]) & set(SERVICE_VERBS)]
    assert started == [], calls
    # systemctl is-active answers yes here: an upgrade says a restart is due, and leaves it to the operator
    assert "restart it when convenient" in result.stdout
    assert "systemctl enable --now autoscaler" in result.stdout


def test_installed_program_runs_from_its_own_path(root: Path) -> None:
    result = inside(
        root,
        "autoscaler --version\n"
        'autoscaler check --config "$R/etc/autoscaler/autoscaler.yaml" "$R/etc/autoscaler/examples"\n'
        "/usr/lib/autoscaler/bin/python -c 'import sys, autoscaler, libvirt;"
        " print(sys.prefix, autoscaler.__file__, libvirt.getVersion() > 0)'",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "autoscaler 0.1.0"
    assert lines[1].startswith(
        "/usr/lib/autoscaler /usr/lib/autoscaler/lib/python3.11/site-packages/autoscaler/"
    )
    assert lines[1].endswith(" True")
    assert "ok: 3 groups in 2 file(s)" in result.stderr


def test_no_build_path_is_left_in_the_installed_files(root: Path) -> None:
    leaked = run(
        "grep", "-rlIF", "-e", str(ROOT), "-e", "build/pkg/deb", str(root / "usr"), str(root / "etc")
    )
    assert leaked.stdout == "", leaked.stdout


def test_installed_unit_verifies_with_its_man_page(root: Path) -> None:
    result = inside(root, "systemd-analyze verify /usr/lib/systemd/system/autoscaler.service")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_installed_man_pages_and_completion_work(root: Path) -> None:
    result = inside(
        root,
        "man -P cat autoscaler-check\n"
        'bash -c \'. /usr/share/bash-completion/completions/autoscaler; COMP_WORDS=(autoscaler "");'
        ' COMP_CWORD=1; _shtab_autoscaler; echo "${COMPREPLY[*]}"\'',
    )
    assert result.returncode == 0, result.stderr
    assert "AUTOSCALER-CHECK(1)" in result.stdout
    assert "--config" in result.stdout
    assert "check explain schema simulate run demo" in result.stdout


def test_upgrade_keeps_the_operator_edits_and_token(root: Path, tokens: tuple[Path, str, str]) -> None:
    assert (root / "etc/autoscaler/autoscaler.yaml").read_text().endswith(EDIT)
    assert not (root / "etc/autoscaler/autoscaler.yaml.dpkg-dist").exists()
    _, before, after = tokens
    assert before == after


def test_purge_removes_what_the_install_made(root: Path) -> None:
    """Last in this module: it purges the package from the shared scratch root."""
    dpkg(root, "--purge", "autoscaler")
    for path in ("usr/lib/autoscaler", "usr/bin/autoscaler", "etc/autoscaler", "var/lib/autoscaler"):
        assert not (root / path).exists(), path
