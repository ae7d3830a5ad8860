"""Which world `autoscaler demo` runs: the richest this machine allows, an asked-for one or a clear error."""

from __future__ import annotations

import pytest

from autoscaler.demo import modes


def everything(name: str) -> str | None:
    return f"/usr/bin/{name}"


def no_haproxy(name: str) -> str | None:
    return None if name == "haproxy" else f"/usr/bin/{name}"


def test_auto_runs_served_where_the_machine_holds_the_rig_and_haproxy_and_prometheus() -> None:
    choice = modes.choose("auto", None, [], everything)
    assert choice.mode == "served"
    assert choice.banner().startswith("world: served: TCG guests answer HTTP behind HAProxy")


@pytest.mark.parametrize(
    ("rig_missing", "which", "named"),
    [
        (["root"], everything, "root"),
        (["program dnsmasq"], everything, "program dnsmasq"),
        ([], no_haproxy, "program haproxy"),
    ],
)
def test_auto_falls_back_to_qemu_and_says_what_served_mode_lacks(
    rig_missing: list[str], which: modes.Which, named: str
) -> None:
    choice = modes.choose("auto", None, rig_missing, which)
    assert choice.mode == "qemu"
    assert named in choice.reason
    assert choice.banner().startswith("world: qemu: empty QEMU clones")


def test_a_uri_means_the_libvirt_worlds_never_served() -> None:
    assert modes.choose("auto", "test", [], everything).mode == "test"
    assert modes.choose("auto", "qemu:///system", [], everything).mode == "qemu"


def test_asked_for_modes_run_as_asked() -> None:
    assert modes.choose("test", None, ["root"], no_haproxy) == modes.Choice("test", "asked for")
    assert modes.choose("qemu", None, [], everything) == modes.Choice("qemu", "asked for")
    assert modes.choose("served", None, [], everything) == modes.Choice("served", "asked for")


def test_served_asked_for_where_it_cannot_run_is_an_error_naming_what_is_missing() -> None:
    with pytest.raises(modes.ModeUnavailable, match="root, program haproxy"):
        modes.choose("served", None, ["root"], no_haproxy)
    with pytest.raises(modes.ModeUnavailable, match="drop --uri"):
        modes.choose("served", "qemu:///system", [], everything)
