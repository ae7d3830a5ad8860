"""Headless Chromium for the console tests, driven by Selenium through Debian's chromedriver.

Nothing is downloaded: the browser is /usr/bin/chromium and the driver /usr/bin/chromedriver
(Debian's `chromium` and `chromium-driver`, the same version). Each session gets a fresh profile in
a temporary directory and the flags that keep Chromium off the network (no background requests,
component updates or sync), so it talks to the daemon on loopback only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
    "--force-device-scale-factor=1",
    "--lang=en-GB",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
"""Screenshots of each page (git-ignored)."""


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (Debian packages chromium and chromium-driver)"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile that records the page's console messages."""
    profile = tempfile.mkdtemp(prefix="autoscaler-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_VIOLATIONS})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " blocked " + (event.blockedURI || "inline")
    + " at " + event.sourceFile + ":" + event.lineNumber);
});
"""
"""Runs before any script of each page (DevTools injects it, outside the page's CSP) and records
every Content-Security-Policy violation; chromedriver's console log does not carry them."""


def console_problems(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's console errors and warnings, and its CSP violations, since the last call."""
    found = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    violations = driver.execute_script(
        "const v = window.__violations || []; window.__violations = []; return v"
    )
    return found + [{"level": "CSP", "message": text} for text in violations]


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save the whole page as test-artifacts/console/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, max(1000, int(height)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1440, 1000)
    return path
