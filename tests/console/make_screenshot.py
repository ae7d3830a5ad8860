"""Makes the README's picture of the console: `python -m tests.console.make_screenshot docs/console.png`.

The same rig as the browser tests (a real daemon on libvirt's test driver, headless Chromium), left
running long enough for the charts to show a morning ramp, then the group page's first screen,
reduced to a palette so that the committed PNG stays small.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.console import browser, rig


def main(out: Path, seconds: float = 40.0) -> None:
    with tempfile.TemporaryDirectory() as workdir, rig.running_daemon(Path(workdir)) as daemon:
        time.sleep(seconds)
        with browser.chromium() as driver:
            driver.set_window_size(1280, 1040)
            driver.get(daemon.url + "/#/group/webmail")
            WebDriverWait(driver, 20).until(
                lambda d: int(d.find_element(By.ID, "chart-load").get_attribute("data-points")) > 0
            )
            time.sleep(1.0)
            raw = out.with_suffix(".raw.png")
            driver.save_screenshot(str(raw))
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    raw.unlink()
    print(f"{out}: {out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console.png"))
