"""The membership cache: a host's listing against single-domain changes made while it was read."""

from __future__ import annotations

from autoscaler.targets.inventory import Cache, Record
from autoscaler.virt import xml

UUID = "0c0c0c0c-0000-4000-8000-000000000001"


def record(phase: xml.Phase) -> Record:
    owner = xml.Ownership("web", "golden-web.qcow2", "rev", 100.0, phase)
    return Record(UUID, "as-web-0c0c0c0c", "h", owner, "running", 512 << 20)


def phase_after(read_first: bool) -> xml.Phase:
    """An event's re-read (creating) and a listing (draining) race; which one does the cache keep?"""
    cache = Cache(["h"])
    cache.upsert(record(xml.Phase.CREATING))
    read = cache.stamp() if read_first else None
    since = cache.listing_started("h")
    if read is None:
        read = cache.stamp()
    cache.upsert(record(xml.Phase.CREATING), read_since=read)  # the re-read lands during the listing
    cache.replace_host("h", [record(xml.Phase.DRAINING)], since)
    found = cache.get("h", UUID)
    assert found is not None
    return found.owner.phase


def test_a_read_begun_before_the_listing_does_not_overrule_it() -> None:
    assert phase_after(read_first=True) is xml.Phase.DRAINING


def test_a_read_begun_after_the_listing_began_wins_over_it() -> None:
    assert phase_after(read_first=False) is xml.Phase.CREATING
