"""Prometheus service discovery: the members worth scraping, in the http_sd / file_sd JSON format.

One entry per member that is ready or draining and has an address, with one `address:port`
target per exporter port its policy names (`discovery.ports`). Labels: `group` (kept as a
target label), and `__meta_autoscaler_{group,instance_id,domain,host,state}` for relabelling
(Prometheus drops `__meta_*` labels after relabelling unless a rule keeps them; see
deploy/prometheus.yml). The instance-id is the domain UUID, which the cloud-init seed also uses.
Booting members are left out: their exporters are not up yet, and a failed scrape of a member
that is still booting would read as an outage.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from autoscaler import model
from autoscaler.policy import spec

LISTED = frozenset({model.InstanceState.READY, model.InstanceState.DRAINING})


def target_groups(policy: spec.GroupPolicy, inventory: model.GroupInventory) -> list[dict[str, Any]]:
    """The group's entries: one per listed member with an address (empty without exporter ports)."""
    ports = policy.discovery.ports
    if not ports:
        return []
    return [_entry(policy.group, member, ports) for member in _listed(inventory.instances)]


def _listed(members: Iterable[model.Instance]) -> list[model.Instance]:
    return [m for m in members if m.state in LISTED and m.addresses]


def _entry(group: str, member: model.Instance, ports: tuple[int, ...]) -> dict[str, Any]:
    address = member.addresses[0]
    host = f"[{address}]" if ":" in address else address
    return {
        "targets": [f"{host}:{port}" for port in ports],
        "labels": {
            "group": group,
            "__meta_autoscaler_group": group,
            "__meta_autoscaler_instance_id": member.uuid,
            "__meta_autoscaler_domain": member.name,
            "__meta_autoscaler_host": member.host,
            "__meta_autoscaler_state": member.state.value,
        },
    }
