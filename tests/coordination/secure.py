"""A real etcd that demands TLS client certificates and etcd users, made at test time.

Certificates come from the `openssl` command into a temporary directory (a CA, the member's
certificate for 127.0.0.1, a client certificate, and an unrelated CA for the refusal case); none is
committed. The member listens on free loopback ports; etcd auth is switched on with `etcdctl`
over the same TLS: `root`, and a user whose role may only read and write below one key prefix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.coordination import rig

ROOT_PASSWORD = "root-Secret-7f3a"
USER = "scaler"
PASSWORD = "scaler-Secret-91be"
PREFIX = "/secure"


@dataclasses.dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files."""

    ca: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path
    other_ca: pathlib.Path


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: pathlib.Path, name: str) -> pathlib.Path:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


def _signed(
    directory: pathlib.Path, name: str, ca: str, extensions: str, subject: str
) -> tuple[pathlib.Path, pathlib.Path]:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem", directory / f"{name}.key"


def certificates(directory: pathlib.Path) -> Certificates:
    """A throwaway CA with a server and a client certificate, and a second, unrelated CA."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    server = _signed(
        directory,
        "etcd-member",
        "test-ca",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        "/CN=etcd-member",
    )
    # No CommonName: etcd's JSON gateway refuses client certificates that carry one.
    client = _signed(
        directory, "autoscaler-client", "test-ca", "extendedKeyUsage=clientAuth\n", "/O=autoscaler"
    )
    other = _ca(directory, "unrelated-ca")
    return Certificates(ca, server[0], server[1], client[0], client[1], other)


@dataclasses.dataclass
class SecureEtcd:
    """One member with TLS, client-certificate auth and etcd users."""

    url: str
    certs: Certificates
    process: subprocess.Popen[bytes]

    def etcdctl(self, *args: str, user: str = f"root:{ROOT_PASSWORD}") -> str:
        certs = self.certs
        command = [
            "etcdctl", f"--endpoints={self.url}", f"--cacert={certs.ca}", f"--cert={certs.client_cert}",
            f"--key={certs.client_key}", "--dial-timeout=5s", "--command-timeout=5s",
        ]  # fmt: skip
        if user:
            command.append(f"--user={user}")
        done = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env={"ETCDCTL_API": "3"},
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def _enable_auth(member: SecureEtcd) -> None:
    """root, plus `scaler` whose role reaches only keys under PREFIX/; then auth on."""
    ctl = member.etcdctl
    ctl("user", "add", f"root:{ROOT_PASSWORD}", user="")
    ctl("role", "add", "autoscaler", user="")
    ctl("role", "grant-permission", "autoscaler", "--prefix=true", "readwrite", f"{PREFIX}/", user="")
    ctl("user", "add", f"{USER}:{PASSWORD}", user="")
    ctl("user", "grant-role", USER, "autoscaler", user="")
    ctl("auth", "enable", user="")


@contextlib.contextmanager
def secure_etcd(workdir: pathlib.Path, token_ttl: int = 300) -> Iterator[SecureEtcd]:
    """A TLS-only etcd member with auth enabled; stopped (by its PID) afterwards."""
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        pytest.skip("needs etcd and etcdctl (Debian package etcd-server, etcd-client)")
    certs = certificates(workdir / "pki")
    client_port, peer_port = rig.free_ports(2)
    url, peer = f"https://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    args = [
        "etcd", "--name", "secure", "--data-dir", str(workdir / "secure.etcd"),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"secure={peer}", "--initial-cluster-state", "new",
        "--cert-file", str(certs.server_cert), "--key-file", str(certs.server_key),
        "--trusted-ca-file", str(certs.ca), "--client-cert-auth",
        "--auth-token", "simple", "--auth-token-ttl", str(token_ttl),
        "--heartbeat-interval", "50", "--election-timeout", "500",
    ]  # fmt: skip
    log = (workdir / "secure.log").open("ab")
    process = subprocess.Popen(args, stdout=log, stderr=log)
    log.close()
    member = SecureEtcd(url, certs, process)
    try:
        rig.wait_for(lambda: _answers(member), 30, "the TLS etcd member to answer", step=0.2)
        _enable_auth(member)
        yield member
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(member: SecureEtcd) -> bool:
    try:
        member.etcdctl("endpoint", "health", user="")
    except (AssertionError, subprocess.TimeoutExpired):
        return False
    return True
