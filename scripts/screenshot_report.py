"""Screenshot a report in Debian's Chromium for the docs:

    .venv/bin/python scripts/screenshot_report.py OUT/sub-otsu_desc-DKTaseg_report.html \
        docs/report_screenshot.png
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(html: Path, png: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(html.resolve().as_uri())
        page.screenshot(path=str(png))
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
