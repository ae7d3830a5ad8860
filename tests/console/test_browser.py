"""The console in a real headless Chromium against a real daemon (`autoscaler run`) on libvirt's test driver.

One daemon and one browser serve the whole module: the daemon scales two groups on load from a
local exporter, and the tests look at the pages as an operator would, pause a group from the
page, and check that a wrong token is refused. Each page's screenshot goes to
test-artifacts/console/ (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.console import browser, rig

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rig.Daemon]:
    with rig.running_daemon(tmp_path_factory.mktemp("console")) as running:
        # Enough ticks for charts and a scale-out with measured clone-to-ready times.
        rig.eventually(
            lambda: len(running.get("/v1/groups/webmail/history")["points"]["at"]) >= 6, 30, "ticks"
        )
        rig.eventually(lambda: running.group("webmail")["ready"] >= 3, 30, "webmail scaled out")
        yield running
    assert running.process.returncode == 0, "the daemon did not stop cleanly:\n" + "".join(running.log[-30:])
    errors = [line for line in running.log if '"level": "error"' in line]
    assert not errors, errors


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    why = browser.missing()
    if why is not None:
        if os.environ.get("AUTOSCALER_REQUIRE_INTEGRATION") == "1":
            pytest.fail(why)
        pytest.skip(why)
    with browser.chromium() as started:
        yield started


@pytest.fixture
def page(driver: WebDriver, daemon: rig.Daemon) -> Iterator[WebDriver]:
    """The browser on a fresh console (no token in the tab); no console error may be left at the end."""
    browser.console_problems(driver)  # drop what earlier tests left
    driver.get(daemon.url + "/")
    driver.execute_script("sessionStorage.clear()")
    yield driver
    problems = browser.console_problems(driver)
    assert not problems, f"console errors or CSP violations: {problems}"


def wait(driver: WebDriver, condition: Any, seconds: float = 20.0) -> Any:
    ignored = (StaleElementReferenceException, NoSuchElementException)
    return WebDriverWait(driver, seconds, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)


def text_of(driver: WebDriver, selector: str) -> str:
    return str(wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).text))


def click(driver: WebDriver, selector: str) -> None:
    """Click the element once enabled; the page re-renders every few seconds: a stale one is found again."""

    def clicked(d: WebDriver) -> bool:
        element = d.find_element(By.CSS_SELECTOR, selector)
        if not element.is_enabled():
            return False
        element.click()
        return True

    WebDriverWait(driver, 20, 0.1, ignored_exceptions=(StaleElementReferenceException,)).until(clicked)


def open_group(driver: WebDriver, daemon: rig.Daemon, group: str) -> None:
    driver.get(f"{daemon.url}/#/group/{group}")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#members-table tbody tr"))


def unlock(driver: WebDriver, token: str) -> None:
    click(driver, "#token-button")
    field = wait(driver, lambda d: d.find_element(By.ID, "token-input"))
    field.send_keys(token)
    driver.find_element(By.ID, "token-save").click()
    wait(driver, lambda d: d.find_element(By.ID, "token-button").text == "Lock actions")


def pause_from_page(driver: WebDriver, reason: str) -> None:
    click(driver, ".page-head [data-action=pause]")
    field = wait(driver, lambda d: d.find_element(By.ID, "pause-reason"))
    field.send_keys(reason)
    driver.find_element(By.ID, "pause-confirm").click()


def test_overview_lists_the_groups_with_their_sizes_and_last_decision(
    page: WebDriver, daemon: rig.Daemon
) -> None:
    rows = wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#groups-table tbody tr[data-group]"))
    assert sorted(r.get_attribute("data-group") for r in rows) == ["batch", "webmail"]
    webmail = text_of(page, "tr[data-group=webmail]")
    status = daemon.group("webmail")
    assert "office-hours" in webmail  # the open schedule window
    assert f"{status['min']} – {status['max']}" in webmail
    assert "sessions" in webmail  # the last decision's one-line reason
    assert "nightly-batch opens" in text_of(page, "tr[data-group=batch]")
    assert text_of(page, "#daemon-state") == "ready"
    # Read-only without a token: the actions are there but locked.
    pause = "tr[data-group=webmail] [data-action=pause]"
    assert wait(page, lambda d: not d.find_element(By.CSS_SELECTOR, pause).is_enabled())
    assert "Read-only" in text_of(page, ".page-head")
    browser.screenshot(page, "overview")


SNAPSHOT = """
const chart = (id) => document.getElementById(id);
if (!chart("chart-load") || !document.getElementById("clone-to-ready")) return {points: 0};
return {
  members: Array.from(document.querySelectorAll("#members-table tr[data-member]"), (r) => r.dataset.member),
  points: Number(chart("chart-load").dataset.points),
  ordered: chart("chart-load").dataset.ordered,
  load: chart("chart-load").dataset.series,
  size: chart("chart-size").dataset.series,
  canvases: document.querySelectorAll(".chart canvas").length,
  ready: document.getElementById("clone-to-ready").innerText,
};
"""
"""The group page as one consistent read (it re-renders every few seconds)."""


def test_group_page_shows_members_charts_trail_and_clone_to_ready(
    page: WebDriver, daemon: rig.Daemon
) -> None:
    open_group(page, daemon, "webmail")
    seen = wait(page, lambda d: (found := d.execute_script(SNAPSHOT))["points"] >= 5 and found)
    names = {m["name"] for m in daemon.group("webmail")["members"]}
    assert set(seen["members"]) & names, (seen["members"], names)
    assert seen["load"].split(",") == ["load", "capacity"]
    assert seen["size"].split(",") == ["current", "ready", "desired"]
    assert seen["canvases"] == 2
    assert "measured" in seen["ready"]
    assert "MEDIAN" in seen["ready"].upper()
    # Between full reads the page fetches only newer points: it keeps up, once each, in order.
    before = seen["points"]
    grown = wait(page, lambda d: (found := d.execute_script(SNAPSHOT))["points"] >= before + 3 and found)
    served = len(daemon.get("/v1/groups/webmail/history")["points"]["at"])
    assert grown["ordered"] == "true"
    assert served - 3 <= grown["points"] <= served
    click(page, "details.decision summary")
    opened = wait(page, lambda d: d.find_element(By.CSS_SELECTOR, "details.decision[open] .trail").text)
    assert "sessions" in opened
    assert "fresh" in opened.lower()
    browser.screenshot(page, "group-webmail")


def test_a_pause_from_the_page_shows_in_status_and_resume_lifts_it(
    page: WebDriver, daemon: rig.Daemon
) -> None:
    open_group(page, daemon, "batch")
    unlock(page, rig.TOKEN)
    pause_from_page(page, "host maintenance")
    wait(page, lambda d: "Paused batch" in text_of(d, "#notices"))
    rig.eventually(lambda: daemon.group("batch")["paused"] == "host maintenance", 10, "paused in /status")
    wait(page, lambda d: "paused: host maintenance" in text_of(d, ".page-head"))
    assert rig.TOKEN not in page.page_source  # the token is never rendered
    browser.screenshot(page, "group-batch-paused")
    click(page, ".page-head [data-action=resume]")
    rig.eventually(lambda: daemon.group("batch")["paused"] is None, 10, "resumed in /status")


def test_a_wrong_token_is_refused_with_a_clear_message(page: WebDriver, daemon: rig.Daemon) -> None:
    open_group(page, daemon, "webmail")
    unlock(page, "not-the-token")
    pause_from_page(page, "should not happen")
    notice = wait(page, lambda d: d.find_element(By.CSS_SELECTOR, ".notice.error"))
    assert "token was refused" in notice.text
    assert daemon.group("webmail")["paused"] is None
    assert page.execute_script("return sessionStorage.length") == 0  # the wrong token is forgotten
    assert text_of(page, "#token-button") == "Unlock actions"
    browser.screenshot(page, "wrong-token")
    # Chromium logs the refused request itself as a console error: that one is expected.
    [refused] = browser.console_problems(page)
    assert "401" in refused["message"]


def test_the_page_is_served_with_a_strict_content_security_policy(daemon: rig.Daemon) -> None:
    import urllib.request

    with urllib.request.urlopen(daemon.url + "/", timeout=5) as response:
        policy = response.headers["Content-Security-Policy"]
        body = response.read().decode()
    assert "script-src 'self'" in policy
    assert "unsafe" not in policy
    assert "<script>" not in body
    assert "style=" not in body


LATER_FIELDS = """
const realFetch = window.fetch;
window.fetch = async (input, init) => {
  const response = await realFetch(input, init);
  if (String(input) !== "status") return response;
  const status = await response.json();
  for (const group of status.groups) {
    group.leader = "kvm-07";
    group.members.forEach((member, index) => {
      member.address = "10.77.0." + (10 + index);
      member.registration = index === 0 ? "draining" : "registered";
    });
    if (group.members.length) group.members[0].state = "registering";
    group.replacements = [{at: Date.now() / 1000 - 60, broken: ["as-webmail-0dead"],
      created: ["as-webmail-0new"], removed: ["as-webmail-0dead"], errors: []}];
  }
  return new Response(JSON.stringify(status), { headers: { "Content-Type": "application/json" } });
};
"""
"""Fields that /status gains as other parts land (leadership, addresses, lifecycle states), and a
replaced member, which the test driver cannot break, added to the daemon's real answer in the page."""


def test_fields_that_status_gains_later_are_shown_without_a_change(
    page: WebDriver, daemon: rig.Daemon
) -> None:
    added = page.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LATER_FIELDS})
    try:
        page.get(daemon.url + "/")
        assert "kvm-07" in text_of(page, "tr[data-group=webmail]")
        assert "LEADER" in text_of(page, "#groups-table thead").upper()
        open_group(page, daemon, "webmail")
        members = wait(page, lambda d: "10.77.0.10" in (found := text_of(d, "#members-table")) and found)
        assert "ADDRESS" in members.upper()
        assert "REGISTRATION" in members.upper()
        assert "registering" in members
        assert "draining" in members
        replaced = text_of(page, "#replacements")
        assert "as-webmail-0dead" in replaced
        assert "as-webmail-0new" in replaced
        browser.screenshot(page, "group-webmail-later-fields")
    finally:
        page.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})


SHARED_PAUSE = """
const realFetch = window.fetch;
window.fetch = async (input, init) => {
  const response = await realFetch(input, init);
  if (String(input) !== "status") return response;
  const status = await response.json();
  for (const group of status.groups.filter((g) => g.group === "batch")) {
    Object.assign(group, { state: "paused", paused: "kernel update", paused_by: "kvm-02",
      paused_at: Date.now() / 1000 - 300 });
  }
  return new Response(JSON.stringify(status), { headers: { "Content-Type": "application/json" } });
};
"""
"""A pause coordinated daemons share through etcd, which records the daemon that took it and when."""


def test_a_shared_pause_says_which_daemon_took_it_and_when(page: WebDriver, daemon: rig.Daemon) -> None:
    added = page.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SHARED_PAUSE})
    try:
        page.get(daemon.url + "/")
        wait(page, lambda d: "through daemon kvm-02" in text_of(d, "tr[data-group=batch]"))
        assert "5m" in text_of(page, "tr[data-group=batch]")
        open_group(page, daemon, "batch")
        head = wait(page, lambda d: "through daemon kvm-02" in (found := text_of(d, ".page-head")) and found)
        assert "paused: kernel update (through daemon kvm-02, at " in head
        assert "kvm-02" in text_of(page, "#facts")
    finally:
        page.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})


MOVES = "return Array.from(document.querySelectorAll('details.decision .move'), (m) => m.textContent)"


def test_decisions_can_be_narrowed_to_changes(page: WebDriver, daemon: rig.Daemon) -> None:
    open_group(page, daemon, "webmail")
    everything = wait(page, lambda d: d.execute_script(MOVES))
    assert everything
    click(page, "#changes-only")

    def only_changes(d: WebDriver) -> list[str] | None:
        moves: list[str] = d.execute_script(MOVES)
        changes = [m for m in moves if len(set(m.split(" → "))) == 2]
        return moves if moves and moves == changes else None

    assert wait(page, only_changes)


def test_the_console_works_behind_a_proxy_under_a_prefix(page: WebDriver, daemon: rig.Daemon) -> None:
    with rig.PrefixProxy(daemon.url) as proxy:
        page.get(proxy.url + "#/group/batch")
        seen = wait(page, lambda d: (found := d.execute_script(SNAPSHOT))["points"] > 0 and found)
        assert seen["members"]
        unlock(page, "not-the-token")
        pause_from_page(page, "through the proxy")
        assert "token was refused" in text_of(page, ".notice.error")
        [refused] = browser.console_problems(page)
        assert "401" in refused["message"]
        page.get(daemon.url + "/")  # leave nothing pending on the proxy before it closes


def test_keyboard_focus_survives_the_periodic_refresh(page: WebDriver, daemon: rig.Daemon) -> None:
    open_group(page, daemon, "webmail")
    click(page, "details.decision summary")
    focused = (
        "return document.activeElement && document.activeElement.closest('details.decision')?.dataset.tick"
    )
    tick = wait(page, lambda d: d.execute_script(focused))
    before = page.execute_script("return document.querySelector('#members-table')")
    wait(
        page, lambda d: d.execute_script("return document.querySelector('#members-table')") != before
    )  # re-rendered
    assert page.execute_script(focused) == tick
