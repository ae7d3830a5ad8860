"""`autoscaler status`: the running daemon's groups and members, read from its /status endpoint.

It prints one block per group (state, size, bounds) and one line per member with its state, host
and addresses, so an operator sees at a glance what each clone is and where to reach it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from autoscaler import settings


def _url(args: argparse.Namespace) -> str:
    """--url, or the HTTP endpoint named by --config (a wildcard bind is reached on loopback)."""
    if args.url:
        return str(args.url).rstrip("/")
    config = settings.load(args.config)
    host = config.http.listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 (read, not bound)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.http.port}"


def fetch(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The daemon's /status document."""
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=timeout) as response:  # noqa: S310
            data: dict[str, Any] = json.loads(response.read())
    except (OSError, urllib.error.URLError) as exc:
        raise OSError(f"cannot read {url}/status: {exc}") from exc
    return data


def render(status: dict[str, Any]) -> str:
    """Human-readable text of a /status document."""
    lines = [f"daemon ready: {status.get('ready')}"]
    for group in status.get("groups", []):
        lines.append(
            f"\ngroup {group['group']}: {group['state']}, {group['current']} member(s), "
            f"{group['ready']} ready (min {group['min']}, max {group['max']})"
        )
        if group.get("paused"):
            lines.append(f"  paused by operator: {group['paused']}{_paused_by(group)}")
        members = group.get("members", [])
        if members:
            lines.append(f"  {'NAME':<24} {'STATE':<9} {'ADDRESSES':<18} HOST")
        for member in members:
            addresses = ",".join(member.get("addresses") or []) or "-"
            note = f"  ({member['note']})" if member.get("note") else ""
            row = f"  {member['name']:<24} {member['state']:<9} {addresses:<18} {member['host']}"
            lines.append(row + note)
    for problems in (status.get("policy_problems") or {}).values():
        lines += [f"policy problem: {p}" for p in problems]
    return "\n".join(lines) + "\n"


def _paused_by(group: dict[str, Any]) -> str:
    """ " (through daemon B, 2026-12-06 12:40:05 UTC)" when the pause says who took it and when."""
    by, at = group.get("paused_by"), group.get("paused_at")
    said = [f"through daemon {by}"] if by else []
    if isinstance(at, int | float):
        said.append(datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    return f" ({', '.join(said)})" if said else ""


def command(args: argparse.Namespace) -> int:
    """Print the status; exit 1 when the daemon cannot be reached."""
    sys.stdout.write(render(fetch(_url(args))))
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `status`."""
    parser = commands.add_parser("status", help="groups and members (state, addresses) of the running daemon")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="the daemon's HTTP endpoint, e.g. http://127.0.0.1:9464")
    where.add_argument(
        "--config", default="/etc/autoscaler/autoscaler.yaml", help="read the endpoint from these settings"
    )
    parser.set_defaults(func=command)
