"""The demo's built-in world: one webmail group following the replayed office day, sized for a laptop.

Time is compressed (a day in a few minutes), so every duration here is a few seconds where a real
policy would say minutes; the shape is the same as policies/webmail.yaml.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from autoscaler import settings
from autoscaler.serving import haproxy_process

GROUP = "webmail"
SOURCE = "loadgen"
PER_INSTANCE = 50
"""Sessions one instance carries; the generator's default peak of 400 needs 8."""
MEMORY_MIB = 128
"""Memory of one demo instance (the test driver and QEMU alike)."""


def policy_yaml(golden: str, template: str, pool: str) -> str:
    """The demo group's policy file."""
    return f"""\
# The demo group: sessions from the built-in webmail load generator, {PER_INSTANCE} per instance.
group: {GROUP}
golden: {golden}
template: {template}
pool: {pool}
min: 1
max: 10
evaluation_interval: 2s
warmup: 0s
checks:
  - name: sessions
    source: {SOURCE}
    query: webmail_active_sessions
    strategy: {{kind: per_instance, per_instance: {PER_INSTANCE}, tolerance: 0.05}}
    max_staleness: 10s
    on_missing: hold
scale_up:
  cooldown: 4s
  rate: {{instances: 3, period: 4s}}
scale_down:
  stabilization: 12s
  cooldown: 6s
  rate: {{instances: 2, period: 6s}}
readiness:
  timeout: 5m
"""


SERVED_MAX = 4
"""TCG guests are slow to boot and share two cores: the served group stays this small."""
SERVED_PER_INSTANCE = 2.0
"""Requests per second one test guest is asked to carry (its busybox server forks per request)."""
SERVED_PEAK_RPS = 6.0
"""The load generator's rate at the office day's peak: four guests' worth with checks and scrapes."""
PROMETHEUS = "prometheus"
HAPROXY_BACKEND = "web"


def served_policy_yaml(golden: str, template: str, pool: str, admin_socket: str) -> str:
    """The served demo group: TCG guests behind HAProxy, scaled on the requests they report.

    The guests count every request they answer, HAProxy's checks and Prometheus's scrapes too
    (about 0.6/s each), which the per-instance target of {SERVED_PER_INSTANCE}/s leaves room for.
    Two members at least, so one can drain while another serves (and both boot at once); each
    clone's seed names it after its domain, which its page and the live panel show.
    """
    return f"""\
# The served demo group: test guests behind HAProxy, {SERVED_PER_INSTANCE} requests/s per instance,
# measured by the guests themselves (guest_http_requests_total, scraped by Prometheus).
group: {GROUP}
golden: {golden}
template: {template}
pool: {pool}
min: 2
max: {SERVED_MAX}
evaluation_interval: 2s
warmup: 0s
checks:
  - name: requests
    source: {PROMETHEUS}
    query: sum(rate(guest_http_requests_total{{group="{GROUP}"}}[12s]))
    strategy: {{kind: per_instance, per_instance: {SERVED_PER_INSTANCE}, tolerance: 0.1}}
    max_staleness: 30s
    on_missing: hold
scale_up:
  cooldown: 4s
  rate: {{instances: 2, period: 4s}}
scale_down:
  stabilization: 15s
  cooldown: 6s
  rate: {{instances: 1, period: 6s}}
readiness: {{probe: tcp, port: 80, interval: 2s, timeout: 150s, failures: 5}}
discovery: {{ports: [80]}}
instance: {{hostname: "${{name}}"}}
serving:
  port: 80
  balancers:
    - kind: haproxy
      socket: {admin_socket}
      backend: {HAPROXY_BACKEND}
      check: {{inter: 4s, rise: 1, fall: 3}}
  launch_timeout: 150s
  drain_timeout: 20s
  retry_interval: 500ms
"""


def haproxy_cfg(admin_socket: str, port: int) -> str:
    """HAProxy for the served demo: a frontend on the namespace's loopback, an empty dynamic backend.

    Timeouts suit guests under TCG, slower to connect and to answer a check than loopback servers.
    """
    backend = haproxy_process.backend(HAPROXY_BACKEND)
    return haproxy_process.config(admin_socket, port, backend, HAPROXY_BACKEND, connect="3s", check="5s")


def scrape_job(daemon_url: str) -> str:
    """Prometheus scrapes the members the daemon lists at /v1/targets (YAML, indented for the rig)."""
    return (
        f"  - job_name: {GROUP}-members\n    scrape_interval: 3s\n    scrape_timeout: 2500ms\n"
        f"    http_sd_configs: [{{url: '{daemon_url}/v1/targets', refresh_interval: 2s}}]\n"
    )


def template_xml(name: str, golden_path: str, domain_type: str, memory_mib: int = MEMORY_MIB) -> str:
    """The shut-off template the clones copy: tiny, no network, a serial console, ACPI for shutdown.

    On the empty golden disk SeaBIOS finds nothing to boot and QEMU idles, which is the whole
    clone, start and destroy lifecycle (the integration tests use the same template).
    """
    return f"""\
<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{golden_path}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def write_token(workdir: Path) -> Path:
    """A random operator token in a file only its owner may read (the demo's pause/resume work)."""
    path = workdir / "api-token"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(secrets.token_urlsafe(24) + "\n")
    return path


def daemon_settings(
    workdir: Path,
    uri: str,
    exporter_url: str,
    port: int,
    memory_reserve_mib: int,
    token_file: Path,
    prometheus_url: str | None = None,
) -> settings.Settings:
    """Daemon settings for the demo: its own state and policy directories and token under `workdir`.

    With `prometheus_url` (the served world) the group's source is that Prometheus, not the exporter.
    """
    sources: dict[str, settings.SourceSettings] = {
        SOURCE: settings.ExporterSettings(kind="exporter", url=exporter_url, timeout=2.0)
    }
    if prometheus_url is not None:
        prometheus = settings.PrometheusSettings(kind="prometheus", url=prometheus_url, timeout=5.0)
        sources = {PROMETHEUS: prometheus}
    base = settings.Settings(
        policies=(str(workdir / "policies"),),
        state_dir=str(workdir / "state"),
        http=settings.HttpSettings(port=port, token_file=str(token_file)),
        sources=sources,
        target=settings.TargetSettings(
            uris=(uri,),
            memory_reserve_mib=memory_reserve_mib,
            reconcile_interval=30.0,
            shutdown_timeout=5.0 if prometheus_url is not None else 30.0,
        ),
        engine=settings.EngineSettings(
            max_concurrent_actions=2,
            slot_timeout=10.0,
            query_timeout=2.0,
            policy_poll=1.0,
            shutdown_grace=20.0,
            jitter=0.0,
            backoff_initial=2.0,
            backoff_max=20.0,
        ),
    )
    return base
