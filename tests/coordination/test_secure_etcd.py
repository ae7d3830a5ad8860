"""Coordination against an etcd that demands TLS client certificates and an etcd user.

The member, its certificates and its users are made at test time (tests.coordination.secure);
the daemon's user may only touch keys under one prefix. etcd's simple tokens lapse after one
unused second here, so renewing them is exercised too.
"""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
import structlog

from autoscaler import coordination, errors, model
from autoscaler.coordination import etcd as etcd_client
from autoscaler.engine import memory
from autoscaler.settings import CoordinationSettings
from tests.coordination import secure
from tests.coordination.test_election import until

TTL = 2


@pytest.fixture(scope="module")
def member() -> Iterator[secure.SecureEtcd]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="as-etcd-tls-"))
    try:
        with secure.secure_etcd(workdir, token_ttl=1) as started:
            yield started
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def password_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "etcd-password"
    path.write_text(secure.PASSWORD + "\n")
    path.chmod(0o600)
    return path


def settings(
    member: secure.SecureEtcd, password_file: pathlib.Path, name: str, **extra: object
) -> CoordinationSettings:
    certs = member.certs
    fields: dict[str, object] = {
        "endpoints": (member.url,),
        "name": name,
        "prefix": f"{secure.PREFIX}/{uuid.uuid4().hex[:8]}",
        "lease_ttl": TTL,
        "margin": 0.5,
        "request_timeout": 1.0,
        "campaign_interval": 0.1,
        "tls_ca": str(certs.ca),
        "tls_cert": str(certs.client_cert),
        "tls_key": str(certs.client_key),
        "username": secure.USER,
        "password_file": str(password_file),
    }
    fields.update(extra)
    return CoordinationSettings(**fields)  # type: ignore[arg-type]


async def test_elects_keeps_fences_and_stores_memory_over_tls_as_an_etcd_user(
    member: secure.SecureEtcd, password_file: pathlib.Path
) -> None:
    with structlog.testing.capture_logs() as logged:
        first = settings(member, password_file, "A", on_unreachable_at_start="fail", start_timeout=5)
        a = coordination.Coordinator(first)
        b = coordination.Coordinator(settings(member, password_file, "B", prefix=first.prefix))
        try:
            await a.start()
            await until(a.acting, 5, "A leads over TLS")
            await b.start()
            await until(lambda: b.election.leader == "A", 5, "B sees A")
            watching = lambda: b.election.follower is not None and b.election.follower.endpoint  # noqa: E731
            await until(watching, 5, "B watches the leader key over TLS as an etcd user")
            a.settled(a.term())
            end = time.monotonic() + 2 * TTL + 0.5  # keepalives renew the lease (and the token)
            while time.monotonic() < end:
                assert a.acting(), "the leader lost its lease over TLS"
                await asyncio.sleep(0.1)
            assert await a.fence.admit("define", "qemu:///x") > time.monotonic()
            with pytest.raises(errors.Fenced):
                await b.fence.admit("define", "qemu:///x")
            saved = memory.Saved(model.GroupMemory(changes=(model.Change(5.0, 1),), last_up_at=5.0))
            await a.store.save("web", saved)
            assert await b.store.load("web") == saved
            await a.close()
            await until(b.acting, 1.0, "B leads after A resigned")
        finally:
            await a.close()
            await b.close()
    assert not [entry for entry in logged if entry["event"] == "etcd_unavailable"]
    assert secure.PASSWORD not in repr(logged)


async def test_a_lapsed_token_is_renewed_without_failing_the_request(
    member: secure.SecureEtcd, password_file: pathlib.Path
) -> None:
    auth = etcd_client.Auth(
        str(member.certs.ca),
        str(member.certs.client_cert),
        str(member.certs.client_key),
        secure.USER,
        str(password_file),
    )
    client = etcd_client.Client([member.url], 1.0, auth)
    key = f"{secure.PREFIX}/token-{uuid.uuid4().hex[:8]}"
    try:
        assert await client.range(key) is None
        assert client.authentications == 1
        await asyncio.sleep(2.5)  # the member forgets a token unused for 1 s (--auth-token-ttl 1)
        result = await client.txn([etcd_client.created_at(key, 0)], [etcd_client.put(key, "v")])
        assert result.succeeded
        assert client.authentications == 2
    finally:
        await client.close()


def _run_daemon(tmp_path: pathlib.Path, coordination_yaml: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "autoscaler.yaml"
    config.write_text(
        f"policies: []\nstate_dir: {tmp_path}\nhttp: {{port: 0}}\ntarget: {{uris: ['test:///default']}}\n"
        f"coordination:\n{coordination_yaml}  on_unreachable_at_start: fail\n  start_timeout: 1s\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _yaml(member: secure.SecureEtcd, password_file: pathlib.Path, ca: pathlib.Path) -> str:
    certs = member.certs
    return (
        f"  endpoints: ['{member.url}']\n  prefix: {secure.PREFIX}/cli\n  tls_ca: {ca}\n"
        f"  tls_cert: {certs.client_cert}\n  tls_key: {certs.client_key}\n"
        f"  username: {secure.USER}\n  password_file: {password_file}\n"
    )


def test_a_wrong_ca_is_a_clear_error_naming_the_endpoint(
    member: secure.SecureEtcd, password_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    done = _run_daemon(tmp_path, _yaml(member, password_file, member.certs.other_ca))
    said = done.stdout + done.stderr
    assert done.returncode == 1
    assert "Traceback" not in said
    assert member.url in said
    assert "certificate verify failed" in said
    assert "tls_ca" in said
    assert secure.PASSWORD not in said


def test_a_wrong_password_is_a_clear_error_and_never_logged(
    member: secure.SecureEtcd, tmp_path: pathlib.Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text(secure.PASSWORD[::-1] + "\n")
    done = _run_daemon(tmp_path, _yaml(member, wrong, member.certs.ca))
    said = done.stdout + done.stderr
    assert done.returncode == 1
    assert "Traceback" not in said
    assert f"refused user '{secure.USER}'" in said
    assert "invalid user ID or password" in said
    assert str(wrong) in said
    assert secure.PASSWORD[::-1] not in said
