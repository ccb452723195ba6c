"""Render a report page in headless Chromium (Playwright driving the system's browser).

`check_in_browser` opens ``index.html`` at a laptop's and a phone's width and fails on a
console message of level error or warning, an uncaught page error, a broken image, or a page
wider than a phone's screen; it saves a full-page screenshot of each under the report folder.
Where no browser or no Playwright exists the test skips with the reason, except under CI
(``$CI`` set), where that is a failure: CI installs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORTS = {"laptop": (1366, 800), "phone": (390, 844)}


def find_browser() -> str | None:
    """The Chromium executable: ``$CIRCUITLAB_CHROMIUM``, or the first on ``PATH``."""
    chosen = os.environ.get("CIRCUITLAB_CHROMIUM")
    if chosen:
        return chosen
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must provide it (.ci/run installs chromium and playwright)")
    pytest.skip(f"{reason} (install Debian's chromium and `pip install playwright`)")


def check_in_browser(folder: Path) -> dict[str, Path]:
    """Render ``folder/index.html``; returns viewport name → screenshot path."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed")
    browser_path = find_browser()
    if browser_path is None:
        _unavailable("no Chromium browser on PATH")
    page_url = (folder / "index.html").resolve().as_uri()
    shots: dict[str, Path] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            for name, (width, height) in VIEWPORTS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                problems: list[str] = []
                page.on(
                    "console",
                    lambda message, problems=problems: (
                        problems.append(f"console {message.type}: {message.text}")
                        if message.type in ("error", "warning")
                        else None
                    ),
                )
                page.on("pageerror", lambda error, problems=problems: problems.append(str(error)))
                page.on(
                    "requestfailed",
                    lambda request, problems=problems: problems.append(f"failed {request.url}"),
                )
                page.goto(page_url, wait_until="load")
                broken = page.evaluate(
                    "Array.from(document.images)"
                    ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)"
                )
                images = page.evaluate("document.images.length")
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                shots[name] = folder / f"screenshot-{name}.png"
                page.screenshot(path=str(shots[name]), full_page=True)
                page.close()
                assert not problems, f"{name}: {problems}"
                assert images > 0 and not broken, f"{name}: broken images {broken}"
                assert overflow <= 1, f"{name}: the page is {overflow}px wider than the screen"
        finally:
            browser.close()
    for shot in shots.values():
        assert shot.read_bytes().startswith(b"\x89PNG")
    return shots
