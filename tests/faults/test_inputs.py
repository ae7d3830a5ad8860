"""Hostile policy files: every one is a located problem (file:line:col: message), never a traceback.

`autoscaler check` prints the problem; the daemon's watcher rejects the file and keeps serving
the good groups, at the first load as on a reload. Hypothesis mutates a valid file thousands of
times to find any input that still escapes as an exception.
"""

from __future__ import annotations

import pathlib
import re

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from autoscaler import cli
from autoscaler.engine import policies
from autoscaler.policy import files, safeyaml
from autoscaler.runtime import clock
from autoscaler.telemetry import metrics as telemetry
from autoscaler.telemetry import registry

GOOD = """\
group: web
golden: golden-web.qcow2
template: web-template
min: 1
max: 4
checks:
  - name: cpu
    source: prometheus
    query: avg(rate(cpu[1m]))
    strategy: {kind: target_tracking, target: 0.6}
"""
STRATEGY = "{kind: target_tracking, target: 1}"
LOCATED = re.compile(r"^\S+:\d+:\d+: .+$")


def alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return GOOD + "\n".join(lines) + "\n"


BAD: dict[str, bytes] = {
    "nul-byte": GOOD.replace("min: 1", "min: \x001").encode(),
    "control-character": GOOD.replace("web-template", "web\x07template").encode(),
    "deep-flow-nesting": GOOD.encode() + b"extra: " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "deep-block-nesting": GOOD.encode()
    + "".join("  " * i + "k:\n" for i in range(3000)).encode()
    + b"  " * 3000
    + b"v\n",
    "alias-bomb": alias_bomb().encode(),
    "latin-1": GOOD.replace("web-template", "w\xe9b").encode("latin-1"),
    "utf-16": GOOD.encode("utf-16"),
    "python-tag": GOOD.encode() + b"x: !!python/object/apply:os.system [echo]\n",
    "bad-timestamp": GOOD.encode() + b"x: !!timestamp 2020-99-99\n",
    "binary": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "too-many-checks": (
        GOOD
        + "".join(
            f"  - {{name: c{i}, source: prometheus, query: q, strategy: {STRATEGY}}}\n" for i in range(100)
        )
    ).encode(),
    "huge": GOOD.encode() + b"# " + b"x" * (5 * 1024 * 1024) + b"\n",
    "syntax": b"group: [web\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_check_reports_a_located_problem_without_a_traceback(
    name: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(BAD[name])

    assert cli.main(["check", str(path)]) == 1

    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = out.splitlines()
    assert lines
    assert all(LOCATED.match(line) and line.startswith(str(path)) for line in lines), lines


def new_watcher(directory: pathlib.Path, applied: list[set[str]]) -> policies.Watcher:
    metrics = telemetry.Metrics(registry.new())
    return policies.Watcher([str(directory)], lambda g: applied.append(set(g)), metrics, clock.SystemClock())


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_file_at_start_or_on_reload_never_stops_the_good_groups(
    name: str, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_bytes(BAD[name])
    applied: list[set[str]] = []
    watcher = new_watcher(tmp_path, applied)

    first = watcher.load()  # at start: the good group is managed, the bad file is reported
    assert applied[-1] == {"web"}
    assert list(first.problems) == [str(tmp_path / "bad.yaml")]

    (tmp_path / "bad.yaml").write_text(GOOD.replace("web", "api"))
    watcher.load()
    assert applied[-1] == {"web", "api"}
    (tmp_path / "bad.yaml").write_bytes(BAD[name])  # a reload: api keeps its last good version
    reload = watcher.load()
    assert applied[-1] == {"web", "api"}
    assert reload.result == "partial"


def test_groups_beyond_the_daemon_limit_reject_the_file_that_brings_them(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("web", "api"))
    limits = safeyaml.Limits(groups=1)

    result = policies.load([str(tmp_path)], {}, limits=limits)

    assert set(result.groups) == {"web"}
    [problem] = result.problems[str(tmp_path / "b.yaml")]
    assert "limits.groups" in problem.message


MUTATIONS = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=32),
    st.sampled_from(
        ["\x00", "\t", ": ", "- ", "&a ", "*a", "!!", "{", "[", "'", '"', "\n  ", "%YAML 1.1\n", "---\n"]
    ),
)


@seed(20261206)
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(position=st.integers(0, len(GOOD)), cut=st.integers(0, 40), insert=MUTATIONS)
def test_fuzzed_policy_documents_never_raise(position: int, cut: int, insert: bytes | str) -> None:
    raw = GOOD.encode()
    piece = insert if isinstance(insert, bytes) else insert.encode()
    mutated = raw[:position] + piece + raw[position + cut :]
    try:
        text = mutated.decode("utf-8")
    except UnicodeDecodeError:
        return  # undecodable bytes are refused before YAML (tested above)
    groups, problems = files.load_text(text, "fuzz.yaml")
    assert groups or problems
    assert all(LOCATED.match(str(p).splitlines()[0]) for p in problems)
