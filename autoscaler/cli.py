"""Command-line entry point: `autoscaler check|explain|simulate|run|demo`; exceptions become exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="autoscaler", description=__doc__)
    parser.add_subparsers(dest="command", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named on the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    print(f"{args.command}: not implemented", file=sys.stderr)
    return 2
