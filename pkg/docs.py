"""Man pages and shell completion, generated from the command line's own argparse definitions.

Run at build time (`make install`), so they cannot drift from the parser: `autoscaler.1`, one
`autoscaler-<command>.1` per sub-command, and bash and zsh completion scripts.

    python pkg/docs.py OUTPUT_DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import shtab
from argparse_manpage.manpage import Manpage

from autoscaler import __version__, cli

FILE_ARGUMENTS = {"paths", "config", "policy", "values", "output", "trace", "plot", "json"}
"""Destinations whose values are paths: completion offers file names for them."""
MANUAL = "autoscaler manual"
DESCRIPTION = r"""\fBautoscaler\fR runs on each KVM hypervisor host as the systemd service
\fBautoscaler.service\fR. For every group of instances cloned from one golden image it reads the
group's policy, fetches the metrics the policy's checks name (Prometheus, an exporter, libvirt),
decides how many instances the group needs and clones or destroys libvirt domains to match. Every
decision keeps the trail of stages that shaped it; \fBautoscaler explain\fR shows the same trail
offline, and \fBautoscaler check\fR validates policy files before the daemon sees them.
.PP
Reload policies with \fBsystemctl reload autoscaler\fR (the daemon also notices edited files).
The daemon's own metrics, status and decisions are served on its HTTP listener (loopback, port
9464 by default)."""
FILES = r"""
.TP
.I /etc/autoscaler/autoscaler.yaml
the daemon's settings (\fBautoscaler run \-\-config\fR)
.TP
.I /etc/autoscaler/policies/
one YAML policy file per group (or several groups per file); checked by \fBautoscaler check\fR
.TP
.I /etc/autoscaler/examples/
example policies to copy from
.TP
.I /etc/autoscaler/api\-token
the operator token for pause, resume and reload over HTTP (0640 root:autoscaler);
the Debian package creates one when missing
.TP
.I /var/lib/autoscaler/
group memory that survives restarts (systemd's StateDirectory)
"""
EXIT_STATUS = r"""
.TP
.B 0
success
.TP
.B 1
invalid input: policy problems (each on its own line, with file, line and field) or bad values
.TP
.B 2
usage error
"""


def sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each sub-command's parser, by name, in the order `--help` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_texts(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {}


def _date() -> str:
    """The build date, from SOURCE_DATE_EPOCH when set (reproducible builds)."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def _page(
    parser: argparse.ArgumentParser, title: str, summary: str, extra: str, description: str = ""
) -> str:
    data = {"project_name": "autoscaler", "version": __version__, "manual_title": MANUAL, "date": _date()}
    page = Manpage(parser, _data=data, format="pretty")
    page.prog = title
    page.description = summary
    if description:
        page.add_section("description", "=", description)
    return str(page) + extra


def _see_also(names: list[str]) -> str:
    refs = ",\n".join(rf"\fB{name}\fR(1)" for name in names)
    return f'.SH "SEE ALSO"\n{refs}\n'


def man_pages(parser: argparse.ArgumentParser) -> dict[str, str]:
    """File name -> roff text: the command's page and one page per sub-command."""
    commands = sub_commands(parser)
    helps = _help_texts(parser)
    pages = {}
    main_extra = f'.SH FILES{FILES}.SH "EXIT STATUS"{EXIT_STATUS}' + _see_also(
        [f"autoscaler-{name}" for name in commands] + ["systemctl", "journalctl"]
    )
    parser.description = None  # the page's own DESCRIPTION says more than the one-line --help
    pages["autoscaler.1"] = _page(
        parser, "autoscaler", "autoscaling daemon for KVM hosts", main_extra, DESCRIPTION
    )
    for name, sub in commands.items():
        extra = f'.SH "EXIT STATUS"{EXIT_STATUS}' + _see_also(["autoscaler"])
        pages[f"autoscaler-{name}.1"] = _page(sub, f"autoscaler-{name}", helps.get(name, ""), extra)
    return pages


def _mark_file_arguments(parser: argparse.ArgumentParser) -> None:
    """Let completion offer file names wherever an argument takes a path."""
    for action in parser._actions:
        if action.dest in FILE_ARGUMENTS and action.nargs != 0:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
    for sub in sub_commands(parser).values():
        _mark_file_arguments(sub)


def completions(parser: argparse.ArgumentParser) -> dict[str, str]:
    """File name -> completion script, for bash and zsh."""
    _mark_file_arguments(parser)
    return {"autoscaler.bash": shtab.complete(parser, "bash"), "_autoscaler": shtab.complete(parser, "zsh")}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, text in {**man_pages(cli.build_parser()), **completions(cli.build_parser())}.items():
        (out / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
