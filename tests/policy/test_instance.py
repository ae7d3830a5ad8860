"""The `instance:` section: its files are read and checked at load, with file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.policy import files, spec

POLICY = """group: web
golden: golden.qcow2
template: web-template
min: 0
max: 3
instance:
  hostname: "web-${{instance_id}}"
  user_data: {user_data}
{extra}"""


def _load(tmp_path: Path, user_data: str, extra: str = "", name: str = "seed/user-data") -> files.LoadResult:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "seed").mkdir()
    (tmp_path / "policies" / "seed" / "user-data").write_text(user_data)
    (tmp_path / "policies" / "web.yaml").write_text(POLICY.format(user_data=name, extra=extra))
    return files.load_paths([tmp_path / "policies"])


def _problems(result: files.LoadResult) -> list[str]:
    return [str(p) for found in result.problems.values() for p in found]


def test_the_files_text_travels_with_the_policy(tmp_path: Path) -> None:
    (tmp_path / "net.yaml").write_text("version: 2\nethernets: {}\n")
    result = _load(tmp_path, "#cloud-config\nhostname: ${hostname}\n", "  network_config: ../net.yaml\n")
    assert result.ok, _problems(result)
    instance = result.groups["web"].policy.instance
    assert instance is not None
    assert instance.user_data == str(tmp_path / "policies" / "seed" / "user-data")
    assert instance.user_data_text == "#cloud-config\nhostname: ${hostname}\n"
    assert instance.network_config_text == "version: 2\nethernets: {}\n"


def test_a_changed_user_data_is_a_new_revision(tmp_path: Path) -> None:
    first = _load(tmp_path, "#!/bin/sh\necho one\n").groups["web"].revision
    (tmp_path / "policies" / "seed" / "user-data").write_text("#!/bin/sh\necho two\n")
    second = files.load_paths([tmp_path / "policies"]).groups["web"].revision
    assert first != second


@pytest.mark.parametrize(
    ("user_data", "extra", "name", "expected"),
    [
        ("", "", "seed/absent", ["web.yaml:8:14: instance.user_data: ", "seed/absent: no such file"]),
        (
            "#cloud-config\nruncmd:\n  - [a, b\n",
            "",
            "seed/user-data",
            [
                "web.yaml:8:14: instance.user_data: ",
                "seed/user-data:4:1: a #cloud-config file is not valid YAML",
            ],
        ),
        (
            "#!/bin/sh\necho ${HOME}\n",
            "",
            "seed/user-data",
            ["web.yaml:8:14: instance.user_data: ", "seed/user-data:2:6: unknown variable ${HOME}"],
        ),
        (
            "",
            "  network_config: seed/user-data\n",
            "seed/user-data",
            ["web.yaml:9:19: instance.network_config: ", "must be a YAML mapping"],
        ),
        (
            "",
            "  user_data_text: sneaked in\n",
            "seed/user-data",
            ["web.yaml:7:3: instance: ", "read from the files"],
        ),
    ],
)
def test_check_names_file_line_and_field(
    tmp_path: Path, user_data: str, extra: str, name: str, expected: list[str]
) -> None:
    [problem] = _problems(_load(tmp_path, user_data, extra, name))
    assert all(part in problem for part in expected), problem


def test_a_bad_hostname_pattern_is_refused(tmp_path: Path) -> None:
    result = _load(tmp_path, "", "", "seed/user-data")
    assert result.ok
    text = (tmp_path / "policies" / "web.yaml").read_text().replace("web-${instance_id}", "${hostname}_x")
    (tmp_path / "policies" / "web.yaml").write_text(text)
    [problem] = _problems(files.load_paths([tmp_path / "policies"]))
    assert "instance.hostname: 1:1: unknown variable ${hostname}" in problem


def test_without_the_section_clones_stay_anonymous() -> None:
    policy = spec.GroupPolicy.model_validate(
        {"group": "g", "golden": "x", "template": "t", "min": 0, "max": 1}
    )
    assert policy.instance is None
    assert policy.discovery.ports == ()
