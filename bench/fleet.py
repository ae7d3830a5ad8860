"""The synthetic fleet the daemon and memory benchmarks load, and this process's memory reading."""

from __future__ import annotations

from pathlib import Path

from autoscaler.policy import spec


def rss_mib() -> float:
    """Resident memory of this process now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def group_policy(index: int) -> spec.GroupPolicy:
    """A group with two checks on distinct queries, sized 2..20."""
    check = {"source": "fake", "strategy": {"kind": "per_instance", "per_instance": 10}}
    return spec.GroupPolicy.model_validate(
        {
            "group": f"g{index:04d}",
            "golden": "golden.qcow2",
            "template": "template",
            "min": 2,
            "max": 20,
            "checks": [
                {**check, "name": "sessions", "query": f"sessions{{group='g{index}'}}"},
                {**check, "name": "requests", "query": f"requests{{group='g{index}'}}"},
            ],
        }
    )
