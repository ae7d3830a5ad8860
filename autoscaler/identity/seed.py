"""One clone's NoCloud seed: its four documents, the ISO that carries them, and its SMBIOS serial.

cloud-init (22.4 and later) finds the seed by its filesystem label `cidata` and needs both
`meta-data` and `user-data` in the root directory; `vendor-data` and `network-config` are
optional. Those names are not ISO9660 d-characters, so the image also carries Joliet and Rock
Ridge names, as `genisoimage -volid cidata -joliet -rock` would. The SMBIOS serial
`ds=nocloud;i=<instance-id>;h=<hostname>` repeats the identity for guests that read it without
mounting anything (its values win over the seed's in cloud-init).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pycdlib
import yaml

from autoscaler.identity import documents, template

LABEL = "cidata"
_ISO_NAMES = {
    "meta-data": "/METADATA.;1",
    "user-data": "/USERDATA.;1",
    "vendor-data": "/VENDORDA.;1",
    "network-config": "/NETWORKC.;1",
}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a clone is: the values its templates see and its seed states."""

    name: str
    """The libvirt domain name."""
    instance_id: str
    """cloud-init's instance-id: new for every clone, so every clone runs its first-boot work."""
    hostname: str
    group: str
    host: str
    """The hypervisor host it runs on."""

    def variables(self) -> dict[str, str]:
        """The template variables, by name."""
        return {
            "name": self.name,
            "hostname": self.hostname,
            "instance_id": self.instance_id,
            "group": self.group,
            "host": self.host,
        }


@dataclass(frozen=True, slots=True)
class Seed:
    """The documents of one seed, as bytes in the guest."""

    meta_data: bytes
    user_data: bytes
    vendor_data: bytes
    network_config: bytes | None

    def files(self) -> dict[str, bytes]:
        """File name -> content, as they appear in the seed's root directory."""
        found = {"meta-data": self.meta_data, "user-data": self.user_data, "vendor-data": self.vendor_data}
        if self.network_config is not None:
            found["network-config"] = self.network_config
        return found


def hostname(pattern: str, name: str, instance_id: str, group: str, host: str) -> str:
    """The clone's hostname from the policy's pattern; ValueError when it is not a valid name."""
    values = {"name": name, "instance_id": instance_id, "group": group, "host": host}
    rendered = template.render(pattern, values)
    if not documents.HOSTNAME.match(rendered):
        raise ValueError(f"hostname pattern {pattern!r} gives {rendered!r}, not a valid host name")
    return rendered


def build(
    identity: Identity,
    user_data: str | None,
    network_config: str | None,
    ssh_authorized_keys: Sequence[str] = (),
) -> Seed:
    """The seed documents of one clone (templates rendered; ValueError on a template problem)."""
    values = identity.variables()
    return Seed(
        meta_data=meta_data(identity, ssh_authorized_keys),
        user_data=template.render(user_data or "", values).encode(),
        vendor_data=b"",
        network_config=None if network_config is None else template.render(network_config, values).encode(),
    )


def meta_data(identity: Identity, ssh_authorized_keys: Sequence[str] = ()) -> bytes:
    """YAML meta-data: instance-id, local-hostname and, when given, public-keys."""
    data: dict[str, object] = {"instance-id": identity.instance_id, "local-hostname": identity.hostname}
    if ssh_authorized_keys:
        data["public-keys"] = list(ssh_authorized_keys)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).encode()


def smbios_serial(identity: Identity) -> str:
    """The SMBIOS system serial cloud-init reads as NoCloud line configuration."""
    return f"ds=nocloud;i={identity.instance_id};h={identity.hostname}"


def iso(files: Mapping[str, bytes]) -> bytes:
    """An ISO9660 image labelled cidata holding `files` in its root, built entirely in memory."""
    image = pycdlib.PyCdlib()
    image.new(interchange_level=3, vol_ident=LABEL, joliet=3, rock_ridge="1.09")
    for name, content in files.items():
        image.add_fp(
            io.BytesIO(content),
            len(content),
            _ISO_NAMES[name],
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    image.write_fp(out)
    image.close()
    return out.getvalue()
