"""Command-line entry point: `autoscaler check|explain|schema|simulate|run|demo`; errors become exit codes.

Exit codes: 0 success, 1 invalid input (policy problems, bad values), 2 usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoscaler import __version__, decide, explain, model, settings
from autoscaler.errors import PolicyError
from autoscaler.policy import files, jsonschema, spec

Command = Callable[[argparse.Namespace], int]


def _check(args: argparse.Namespace) -> int:
    config = None if args.config is None else settings.load(args.config)
    sources = None if config is None else list(config.sources)
    limits = settings.LimitSettings() if config is None else config.limits
    result = files.load_paths(args.paths, sources, limits.policy())
    problems = [p for file_problems in result.problems.values() for p in file_problems]
    for problem in problems:
        print(problem)
    for group in result.groups.values():
        for warning in group.warnings:
            print(warning, file=sys.stderr)
    if not result.problems:
        print(f"no policy files found in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    if not problems:
        count = len(result.groups)
        print(f"ok: {count} group{'s' * (count != 1)} in {len(result.problems)} file(s)", file=sys.stderr)
    return 1 if problems else 0


def _add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("check", help="validate policy files; every problem on its own line")
    parser.add_argument("paths", nargs="+", help="policy files or directories of them")
    parser.add_argument(
        "--config",
        help="the daemon's settings file: also check that every metric source named is defined there",
    )
    parser.set_defaults(func=_check)


def _when(text: str | None) -> float:
    """Now, or the ISO-8601 time given; one without a time zone is UTC (never the machine's zone)."""
    if text is None:
        return time.time()
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def _counts(current: int, ready: int | None) -> None:
    """Refuse instance counts no group can have."""
    if current < 0:
        raise ValueError(f"--current must be 0 or more, got {current}")
    if ready is not None and ready < 0:
        raise ValueError(f"--ready must be 0 or more, got {ready}")
    if ready is not None and ready > current:
        raise ValueError(f"--ready ({ready}) cannot exceed --current ({current})")


def _unknown_checks(values: Iterable[str], policy: spec.GroupPolicy) -> list[str]:
    """One line per value whose name is no check of the group (a typo would be silently ignored)."""
    names = [check.name for check in policy.checks]
    lines = []
    for name in values:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            listed = ", ".join(names) or "none"
            lines.append(f"no check '{name}' in group '{policy.group}' (checks: {listed}){hint}")
    return lines


def _read_values(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    values = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of check name -> value")
    return values


def _forecast_note(decision: model.Decision, policy: spec.GroupPolicy) -> model.Decision:
    """The decision with a note in its trail when the daemon would also consult a forecast."""
    if policy.predictive.mode != "active":
        return decision
    note = model.Stage(
        "forecast",
        decision.desired,
        decision.desired,
        "not evaluated by explain; the daemon's forecast may raise this count ahead of demand",
    )
    return dataclasses.replace(decision, trail=(*decision.trail, note))


def _inventory(group: str, current: int, ready: int | None, now: float) -> model.GroupInventory:
    ready_count = current if ready is None else min(ready, current)
    members = tuple(
        model.Instance(
            name=f"{group}-{index}",
            uuid=f"00000000-0000-0000-0000-{index:012d}",
            state=model.InstanceState.READY if index < ready_count else model.InstanceState.BOOTING,
            created_at=now - 86400.0,
        )
        for index in range(current)
    )
    return model.GroupInventory(group, members)


def _explain(args: argparse.Namespace) -> int:
    policies = {p.group: p for p in files.load_file(args.policy)}
    if args.group not in policies:
        print(f"{args.policy}: no group '{args.group}' (groups: {', '.join(policies)})", file=sys.stderr)
        return 1
    policy = policies[args.group]
    _counts(args.current, args.ready)
    now = _when(args.at)
    values = _read_values(args.values)
    unknown = _unknown_checks(values, policy)
    for line in unknown:
        print(f"{args.values}: {line}", file=sys.stderr)
    if unknown:
        return 1
    inputs = explain.inputs_from_values(values, now)
    inventory = _inventory(args.group, args.current, args.ready, now)
    decision, _ = decide.evaluate(policy, inventory, inputs, model.GroupMemory(), now)
    decision = _forecast_note(decision, policy)
    print(explain.to_json(decision) if args.json else explain.to_text(decision))
    return 0


def _add_explain(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("explain", help="show the decision a policy makes for given values")
    parser.add_argument("policy", help="the policy file")
    parser.add_argument("--group", required=True, help="the group within the file")
    parser.add_argument("--current", type=int, required=True, help="instances the group has now")
    parser.add_argument("--ready", type=int, help="of those, how many are ready (default: all)")
    parser.add_argument("--values", help="JSON file: check name -> number | null | 'failed' | {value, age}")
    parser.add_argument(
        "--at",
        help="evaluate at this ISO-8601 time (default: now); matters for schedules; a time without a"
        " zone (2026-11-25T09:00) is UTC, so give one (+01:00) for local time",
    )
    parser.add_argument("--json", action="store_true", help="print the decision record as JSON")
    parser.set_defaults(func=_explain)


def _schema(args: argparse.Namespace) -> int:
    text = jsonschema.render()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _add_schema(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("schema", help="print the JSON Schema of the policy format")
    parser.add_argument("--output", "-o", help="write it to this file instead of standard output")
    parser.set_defaults(func=_schema)


def _add_optional(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Sub-commands whose modules may pull in heavier dependencies are registered lazily here."""
    for module_name in ("autoscaler.simulate.cli", "autoscaler.runtime.cli", "autoscaler.runtime.status"):
        try:
            module = __import__(module_name, fromlist=["add_parser"])
        except ImportError:
            continue
        module.add_parser(commands)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="autoscaler", description="Autoscaling for KVM hosts.")
    parser.add_argument("--version", action="version", version=f"autoscaler {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_check(commands)
    _add_explain(commands)
    _add_schema(commands)
    _add_optional(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named on the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"autoscaler {args.command}: {exc}", file=sys.stderr)
        return 1
