"""Man pages and completion come from the argparse definitions, so they list every sub-command and
option the parser has, render without roff warnings and complete in a real bash."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from autoscaler import cli

DOCS = Path(__file__).resolve().parents[2] / "pkg" / "docs.py"


def load_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("autoscaler_docs", DOCS)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs = load_docs()
COMMANDS = docs.sub_commands(cli.build_parser())


def options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string but --help, as the page and the completion must show it."""
    return [
        option
        for action in parser._actions
        for option in action.option_strings
        if not isinstance(action, argparse._HelpAction)
    ]


def plain(roff: str) -> str:
    return roff.replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return {name: plain(text) for name, text in docs.man_pages(cli.build_parser()).items()}


def test_every_sub_command_has_a_page_naming_its_options(pages: dict[str, str]) -> None:
    assert set(COMMANDS) >= {"check", "explain", "schema", "simulate", "run", "demo"}
    assert set(pages) == {"autoscaler.1"} | {f"autoscaler-{name}.1" for name in COMMANDS}
    for name, parser in COMMANDS.items():
        page = pages[f"autoscaler-{name}.1"]
        assert page.startswith(f'.TH AUTOSCALER-{name.upper()} "1"'), page[:80]
        for option in options(parser):
            assert option in page, f"autoscaler-{name}(1) lacks {option}"
        assert f"autoscaler-{name}(1)" in pages["autoscaler.1"]


def test_the_main_page_describes_files_and_exit_status(pages: dict[str, str]) -> None:
    main = pages["autoscaler.1"]
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", '"EXIT STATUS"', '"SEE ALSO"'):
        assert f".SH {section}" in main
    assert "/etc/autoscaler/autoscaler.yaml" in main


@pytest.mark.skipif(shutil.which("man") is None, reason="man is absent (Debian package: man-db)")
def test_pages_render_without_warnings(tmp_path: Path) -> None:
    for name, text in docs.man_pages(cli.build_parser()).items():
        page = tmp_path / name
        page.write_text(text)
        result = subprocess.run(
            ["man", "--warnings", "-l", "-P", "cat", str(page)],
            capture_output=True,
            text=True,
            env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", f"{name}: {result.stderr}"
        assert name.removesuffix(".1").upper() in result.stdout


COMPLETE = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
_shtab_autoscaler
printf '%s\\n' "${COMPREPLY[@]}"
"""


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers after `words` (the last one being the word under the cursor)."""
    result = subprocess.run(
        ["bash", "-c", COMPLETE, "complete", str(script), *words],
        capture_output=True,
        text=True,
        check=True,
        cwd=script.parent,
    )
    return result.stdout.split()


@pytest.fixture(scope="module")
def bash_completion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = tmp_path_factory.mktemp("completion") / "autoscaler.bash"
    script.write_text(docs.completions(cli.build_parser())["autoscaler.bash"])
    return script


def test_bash_completes_sub_commands_and_their_options(bash_completion: Path) -> None:
    assert complete(bash_completion, "autoscaler", "") == list(COMMANDS)
    for name, parser in COMMANDS.items():
        offered = complete(bash_completion, "autoscaler", name, "-")
        long_options = [option for option in options(parser) if option.startswith("--")]
        assert set(long_options) <= set(offered), name


def test_bash_completes_choices_and_file_names(bash_completion: Path) -> None:
    assert "hpa" in complete(bash_completion, "autoscaler", "simulate", "--baseline", "")
    (bash_completion.parent / "webmail.yaml").write_text("")
    assert complete(bash_completion, "autoscaler", "check", "web") == ["webmail.yaml"]
