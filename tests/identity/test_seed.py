"""The seed as cloud-init itself reads it: Debian's cloud-init 22.4 parses what we build.

cloud-init is imported from the Debian package (appended to sys.path, so the venv's own
packages win). The ISO is read back through its Rock Ridge names, as the guest kernel reads it,
into a directory that cloud-init's NoCloud code turns into meta-data, user-data, vendor-data and
network-config exactly as it does on a mounted seed.
"""

from __future__ import annotations

import io
import pathlib
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pycdlib
import pytest

from autoscaler.identity import seed

DIST = "/usr/lib/python3/dist-packages"
MAC = "52:54:00:12:34:56"
NETWORK_V2 = f"""version: 2
ethernets:
  primary:
    match: {{macaddress: "{MAC}"}}
    set-name: eth0
    dhcp4: true
"""
USER_DATA = """#cloud-config
hostname: ${hostname}
fqdn: ${hostname}.example.internal
write_files:
  - path: /etc/autoscaler-instance
    content: "${group} ${instance_id} on ${host} as ${name}"
runcmd:
  - echo "home is $HOME and $${HOME}"
"""


@pytest.fixture(scope="module")
def cloudinit() -> Iterator[dict[str, ModuleType]]:
    if not pathlib.Path(DIST, "cloudinit").is_dir():
        pytest.skip("cloud-init is not installed (Debian package cloud-init)")
    sys.path.append(DIST)
    try:
        # Debian's requests (imported by cloud-init) warns that the venv's newer urllib3 is not
        # the one it was packaged with; cloud-init's seed parsing does not use requests.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="urllib3 .* doesn't match a supported version")
            from cloudinit import handlers, util
            from cloudinit.net import network_state
            from cloudinit.sources import DataSourceNoCloud

        yield {"util": util, "nocloud": DataSourceNoCloud, "net": network_state, "handlers": handlers}
    finally:
        sys.path.remove(DIST)


def _identity() -> seed.Identity:
    return seed.Identity(
        name="as-web-0123abcd",
        instance_id="0123abcd-1111-4222-8333-444455556666",
        hostname="web-0123abcd",
        group="web",
        host="kvm1",
    )


def _extract(image: bytes, into: pathlib.Path) -> dict[str, str]:
    """The files of the ISO's root by their Rock Ridge names, written into `into`; plus its label."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    try:
        names = [
            child.rock_ridge.name().decode()
            for child in iso.list_children(rr_path="/")
            if child.rock_ridge is not None and child.is_file()
        ]
        for name in names:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            (into / name).write_bytes(out.getvalue())
        label = iso.pvd.volume_identifier.decode().strip()
    finally:
        iso.close()
    return {"label": label, "names": ",".join(sorted(names))}


def _seeded(cloudinit: dict[str, Any], directory: pathlib.Path) -> dict[str, Any]:
    """What NoCloud makes of a mounted seed directory (DataSourceNoCloud._get_data's own calls)."""
    util, nocloud = cloudinit["util"], cloudinit["nocloud"]
    found = util.pathprefix2dict(
        str(directory), required=["meta-data", "user-data"], optional=["vendor-data", "network-config"]
    )
    empty = {"meta-data": {}, "user-data": "", "vendor-data": "", "network-config": None}
    merged: dict[str, Any] = nocloud._merge_new_seed(empty, found)
    return merged


def test_cloud_init_reads_identity_user_data_and_network_config(
    cloudinit: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    identity = _identity()
    documents = seed.build(identity, USER_DATA, NETWORK_V2, ["ssh-ed25519 AAAAC3Nza test@example"])
    found = _extract(seed.iso(documents.files()), tmp_path)
    assert found == {"label": "cidata", "names": "meta-data,network-config,user-data,vendor-data"}

    merged = _seeded(cloudinit, tmp_path)
    assert merged["meta-data"]["instance-id"] == identity.instance_id
    assert merged["meta-data"]["local-hostname"] == "web-0123abcd"
    assert merged["meta-data"]["public-keys"] == ["ssh-ed25519 AAAAC3Nza test@example"]

    text = merged["user-data"].decode()
    assert cloudinit["handlers"].type_from_starts_with(text) == "text/cloud-config"
    config = cloudinit["util"].load_yaml(text)
    assert config["hostname"] == "web-0123abcd"
    assert config["write_files"][0]["content"] == (
        "web 0123abcd-1111-4222-8333-444455556666 on kvm1 as as-web-0123abcd"
    )
    assert config["runcmd"] == ['echo "home is $HOME and ${HOME}"']

    state = cloudinit["net"].parse_net_config_data(merged["network-config"])
    [interface] = list(state.iter_interfaces())
    assert interface["mac_address"] == MAC
    assert interface["name"] == "eth0"
    assert [s["type"] for s in interface["subnets"]] == ["dhcp4"]


def test_without_user_data_the_seed_still_has_every_required_file(
    cloudinit: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    _extract(seed.iso(seed.build(_identity(), None, None).files()), tmp_path)
    merged = _seeded(cloudinit, tmp_path)
    assert merged["meta-data"] == {
        "instance-id": "0123abcd-1111-4222-8333-444455556666",
        "local-hostname": "web-0123abcd",
    }
    assert merged["user-data"] == b""
    assert merged["network-config"] is None


def test_cloud_init_reads_the_smbios_serial(cloudinit: dict[str, Any]) -> None:
    fill: dict[str, str] = {}
    serial = seed.smbios_serial(_identity())
    assert cloudinit["nocloud"].parse_cmdline_data("ds=nocloud", fill, serial)
    assert fill == {"instance-id": "0123abcd-1111-4222-8333-444455556666", "local-hostname": "web-0123abcd"}


def test_a_hostname_pattern_that_gives_no_host_name_is_refused() -> None:
    assert seed.hostname("web-${instance_id}", "n", "abc", "web", "kvm1") == "web-abc"
    with pytest.raises(ValueError, match="not a valid host name"):
        seed.hostname("${host}", "n", "abc", "web", "KVM_1")
