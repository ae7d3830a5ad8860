"""Policies: the format (`spec`), where policies come from (`files`), and calendar windows (`schedule`)."""

from __future__ import annotations

from typing import Protocol

from autoscaler.policy.files import LoadResult


class PolicySource(Protocol):
    """Where the daemon's policies come from: a directory of YAML files, or a mapping in tests."""

    def load(self) -> LoadResult:
        """Every valid group and every problem, read afresh."""
        ...
