"""The namespace rig and the test guest: a guest boots on the private network, takes a DHCP lease
and answers HTTP with the identity written in its SMBIOS serial (no daemon involved)."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.integration import netns

pytestmark = [pytest.mark.integration_libvirt, pytest.mark.slow]


def _guest_xml(rig: netns.Rig, name: str, overlay: str) -> str:
    """The template with its disk on an overlay and an SMBIOS serial carrying the identity."""
    text = rig.write_template(name).read_text()
    text = text.replace(f"<source file='{rig.golden}'/>", f"<source file='{overlay}'/>")
    serial = f"<entry name='serial'>ds=nocloud;i=iid-{name};h={name}</entry>"
    sysinfo = f"<sysinfo type='smbios'><system>{serial}</system></sysinfo>"
    text = text.replace("<devices>", f"{sysinfo}\n  <devices>")
    return text.replace("</os>", "  <smbios mode='sysinfo'/>\n  </os>")


async def test_a_guest_takes_a_lease_and_serves_its_identity(netns_rig: netns.Rig) -> None:
    overlay = netns_rig.images / "rig-smoke.qcow2"
    base = str(netns_rig.golden)
    qemu_img = await asyncio.create_subprocess_exec(
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, str(overlay)
    )
    assert await qemu_img.wait() == 0
    xml_text = _guest_xml(netns_rig, "rig-smoke", str(overlay))
    (netns_rig.workdir / "rig-smoke-domain.xml").write_text(xml_text)
    netns_rig.virsh("create", str(netns_rig.workdir / "rig-smoke-domain.xml"))
    try:

        def leased() -> str | None:
            out = netns_rig.virsh("net-dhcp-leases", netns_rig.network).stdout
            found = re.search(r"(10\.77\.0\.\d+)/24\s+rig-smoke", out)
            return found.group(1) if found else None

        address = await netns.wait_for(leased, 90.0, "a DHCP lease for rig-smoke")

        async def page() -> str | None:
            status, body = await netns_rig.get(f"http://{address}/")
            return body if status == 200 else None

        body = await netns.wait_for(page, 30.0, "the guest's page")
        assert body.strip() == "hostname=rig-smoke instance-id=iid-rig-smoke"
        status, metrics = await netns_rig.get(f"http://{address}/metrics")
        assert status == 200
        assert 'guest_info{hostname="rig-smoke",instance_id="iid-rig-smoke"} 1' in metrics
        served = int(re.search(r"^guest_http_requests_total (\d+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
        assert served >= 2  # the page and this scrape, each counted
        status, slow = await netns_rig.get(f"http://{address}/slow?ms=300")
        assert (status, slow.strip()) == (200, "slept 300ms on rig-smoke")
        assert (await netns_rig.get(f"http://{address}/health")) == (200, "ok\n")
        status, log = await netns_rig.get(f"http://{address}/requests")
        assert "GET /slow?ms=300" in log
    finally:
        netns_rig.remove_domains("rig-smoke", volume_prefix="rig-smoke")
