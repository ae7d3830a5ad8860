"""Command-line entry point: `autoscaler check|explain|schema|simulate|run|demo`; errors become exit codes.

Exit codes: 0 success, 1 invalid input (policy problems, bad values), 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from autoscaler import __version__, decide, explain, model, settings
from autoscaler.errors import PolicyError
from autoscaler.policy import files, jsonschema

Command = Callable[[argparse.Namespace], int]


def _check(args: argparse.Namespace) -> int:
    sources = None if args.config is None else list(settings.load(args.config).sources)
    result = files.load_paths(args.paths, sources)
    problems = [p for file_problems in result.problems.values() for p in file_problems]
    for problem in problems:
        print(problem)
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
    if text is None:
        return time.time()
    return datetime.fromisoformat(text).timestamp()


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
    now = _when(args.at)
    values = json.loads(Path(args.values).read_text(encoding="utf-8")) if args.values else {}
    inputs = explain.inputs_from_values(values, now)
    inventory = _inventory(args.group, args.current, args.ready, now)
    decision, _ = decide.evaluate(policies[args.group], inventory, inputs, model.GroupMemory(), now)
    print(explain.to_json(decision) if args.json else explain.to_text(decision))
    return 0


def _add_explain(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("explain", help="show the decision a policy makes for given values")
    parser.add_argument("policy", help="the policy file")
    parser.add_argument("--group", required=True, help="the group within the file")
    parser.add_argument("--current", type=int, required=True, help="instances the group has now")
    parser.add_argument("--ready", type=int, help="of those, how many are ready (default: all)")
    parser.add_argument("--values", help="JSON file: check name -> number | null | 'failed' | {value, age}")
    parser.add_argument("--at", help="evaluate at this ISO-8601 time (default: now); matters for schedules")
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
    for module_name in ("autoscaler.simulate.cli", "autoscaler.runtime.cli"):
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
