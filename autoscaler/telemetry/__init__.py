"""The daemon's own telemetry: Prometheus metrics (metrics, groups) and structured logs (logging)."""
