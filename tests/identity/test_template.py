"""Templates take a closed set of variables; everything else that looks like one is an error."""

from __future__ import annotations

import pytest

from autoscaler.identity import template

VALUES = {"name": "as-web-1", "hostname": "web-1", "instance_id": "iid", "group": "web", "host": "kvm1"}


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("${name} ${ hostname } ${instance_id}", "as-web-1 web-1 iid"),
        ("$HOME $1 $$ $${HOME} costs $5", "$HOME $1 $$ ${HOME} costs $5"),
        ("${group}@${host}\n", "web@kvm1\n"),
        ("no placeholders", "no placeholders"),
    ],
)
def test_render(text: str, rendered: str) -> None:
    assert template.render(text, VALUES) == rendered


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("ok\n  ${HOME}", "2:3", "unknown variable ${HOME}"),
        ("${instance-id}", "1:1", "unknown variable ${instance-id}"),
        ("a ${name", "1:3", "without a closing"),
        ("${}", "1:1", "unknown variable ${}"),
    ],
)
def test_problems_name_line_and_column(text: str, where: str, says: str) -> None:
    [problem] = template.problems(text)
    assert str(problem).startswith(f"{where}: ")
    assert says in problem.message
    with pytest.raises(ValueError, match=r"unknown variable|without a closing"):
        template.render(text, VALUES)


def test_a_narrower_set_refuses_the_others() -> None:
    [problem] = template.problems("${hostname}", ("name",))
    assert "known: name" in problem.message
