"""Policy files: every golden bad file yields exactly its expected messages; the examples load clean."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from autoscaler import cli
from autoscaler.errors import PolicyError
from autoscaler.policy import files
from autoscaler.policy import jsonschema as policy_schema

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "fixtures" / "policies" / "invalid"
GOLDEN = sorted(INVALID.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_invalid_file_yields_its_messages(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    relative = path.relative_to(ROOT)
    assert cli.main(["check", str(relative)]) == 1
    expected = path.with_suffix(".expected").read_text(encoding="utf-8")
    assert capsys.readouterr().out == expected


def test_examples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "policies/"]) == 0
    assert capsys.readouterr().out == ""


def test_every_error_is_reported_at_once() -> None:
    _, problems = files.load_text((INVALID / "bad-values.yaml").read_text(), "x.yaml")
    assert len(problems) == 8
    assert all(str(p).startswith("x.yaml:") for p in problems)


def test_a_bad_file_never_blocks_the_good_ones(tmp_path: Path) -> None:
    shutil.copytree("policies/cloud-init", tmp_path / "cloud-init")  # webmail's user-data
    (tmp_path / "good.yaml").write_text(Path("policies/webmail.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("group: x\nmin: 1\n")
    result = files.load_paths([tmp_path])
    assert set(result.groups) == {"webmail"}
    assert result.problems[str(tmp_path / "good.yaml")] == []
    assert [p.path for p in result.problems[str(tmp_path / "bad.yaml")]] == ["golden", "template", "max"]


def test_a_group_defined_twice_is_an_error(tmp_path: Path) -> None:
    text = Path("policies/webmail.yaml").read_text()
    shutil.copytree("policies/cloud-init", tmp_path / "cloud-init")  # webmail's user-data
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    result = files.load_paths([tmp_path])
    (problem,) = result.problems[str(tmp_path / "b.yaml")]
    assert "already defined at" in problem.message


def test_several_documents_in_one_file(tmp_path: Path) -> None:
    one = "group: {name}\ngolden: g.qcow2\ntemplate: t\nmin: 1\nmax: 2\n"
    path = tmp_path / "two.yaml"
    path.write_text(one.format(name="a") + "---\n" + one.format(name="b"))
    assert [p.group for p in files.load_file(path)] == ["a", "b"]


def test_load_file_raises_with_every_problem() -> None:
    with pytest.raises(PolicyError) as caught:
        files.load_file(INVALID / "unknown-keys.yaml")
    assert len(caught.value.problems) == 4


def test_revision_changes_with_content() -> None:
    (first,) = files.load_text("group: a\ngolden: g\ntemplate: t\nmin: 1\nmax: 2\n", "a.yaml")[0]
    (second,) = files.load_text("group: a\ngolden: g\ntemplate: t\nmin: 1\nmax: 3\n", "a.yaml")[0]
    assert first.revision != second.revision


def test_published_schema_is_in_sync_with_the_model() -> None:
    published = Path("policies/schema.json").read_text(encoding="utf-8")
    assert published == policy_schema.render(), "regenerate: autoscaler schema -o policies/schema.json"


@pytest.mark.parametrize("example", sorted(Path(ROOT / "policies").glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_validate_against_the_schema(example: Path) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(Path("policies/schema.json").read_text()))
    for document in yaml.safe_load_all(example.read_text()):
        assert list(validator.iter_errors(document)) == []


def test_schema_rejects_what_the_loader_rejects() -> None:
    validator = jsonschema.Draft202012Validator(policy_schema.schema())
    document = yaml.safe_load((INVALID / "unknown-keys.yaml").read_text())
    assert list(validator.iter_errors(document))


GROUP = "group: {name}\ngolden: g.qcow2\ntemplate: t\nmin: 1\nmax: 2\n"
LISTED = "  - group: {name}\n    golden: g.qcow2\n    template: t\n    min: 1\n    max: 2\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GROUP.format(name="a") + "---\n" + GROUP.format(name="a"),
            "x.yaml:7:8: group: group 'a' is already defined at x.yaml:1:8",
        ),
        (
            "groups:\n" + LISTED.format(name="a") + LISTED.format(name="b") + LISTED.format(name="a"),
            "x.yaml:12:12: groups[2].group: group 'a' is already defined at x.yaml:2:12",
        ),
        (
            "groups:\n" + LISTED.format(name="a") + "---\n" + GROUP.format(name="a"),
            "x.yaml:8:8: group: group 'a' is already defined at x.yaml:2:12",
        ),
    ],
    ids=["documents", "groups-list", "list-then-document"],
)
def test_a_group_defined_twice_in_one_file_is_located(text: str, expected: str) -> None:
    groups, problems = files.load_text(text, "x.yaml")
    assert groups == []
    assert [str(p) for p in problems] == [expected]


def test_a_bare_off_mode_means_off_not_false() -> None:
    text = "group: a\ngolden: g\ntemplate: t\nmin: 1\nmax: 2\npredictive:\n  mode: off\n"
    (group,), problems = files.load_text(text, "a.yaml")
    assert problems == []
    assert group.policy.predictive.mode == "off"
