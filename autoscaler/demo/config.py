"""The demo's built-in world: one webmail group following the replayed office day, sized for a laptop.

Time is compressed (a day in a few minutes), so every duration here is a few seconds where a real
policy would say minutes; the shape is the same as policies/webmail.yaml.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from autoscaler import settings

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
    workdir: Path, uri: str, exporter_url: str, port: int, memory_reserve_mib: int, token_file: Path
) -> settings.Settings:
    """Daemon settings for the demo: its own state and policy directories and token under `workdir`."""
    base = settings.Settings(
        policies=(str(workdir / "policies"),),
        state_dir=str(workdir / "state"),
        http=settings.HttpSettings(port=port, token_file=str(token_file)),
        sources={SOURCE: settings.ExporterSettings(kind="exporter", url=exporter_url, timeout=2.0)},
        target=settings.TargetSettings(
            uris=(uri,), memory_reserve_mib=memory_reserve_mib, reconcile_interval=30.0
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
