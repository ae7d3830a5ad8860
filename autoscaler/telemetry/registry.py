"""The daemon's registry with the standard process, platform and GC collectors registered explicitly.

The composition root calls `new()`; tests make a bare `CollectorRegistry()` of their own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, gc_collector, platform_collector, process_collector


def new() -> CollectorRegistry:
    """A fresh registry exporting process_*, python_info and python_gc_* besides our own metrics."""
    registry = CollectorRegistry()
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return registry


Registry = CollectorRegistry
"""The registry type, for annotations outside telemetry."""
