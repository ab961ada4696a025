"""Debian's Chromium driven by Playwright, for the tests that look at pages as a person does.

Playwright cannot download its own browser here, so it drives ``/usr/bin/chromium`` (``make test``
installs the package where it can). Locally a test that needs the browser skips with the reason when
it is missing; under ``CI=true`` it fails instead, because a skip would hide a break.

Use the fixtures by importing them into a conftest (``from tests.browser import browser, page``)
or call :func:`launch_with_extension` for a browser with an unpacked extension loaded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("BITBUDDIES_CHROMIUM", "/usr/bin/chromium")

# Flags for a headless Chromium on a machine with a closed network: without the background
# networking ones it keeps trying (and failing) to reach Google's services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Screenshots for a reviewer to look at (git-ignored, under var/).
SCREENSHOT_DIR = Path(__file__).resolve().parents[1] / "var" / "screenshots"

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


def _unavailable(reason: str) -> None:
    message = f"Chromium is not available ({reason}); the browser tests need it (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " and CI must run them", pytrace=False)
    pytest.skip(message)


def chromium_path() -> str:
    """The Chromium executable; skips or fails when it is missing."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"{CHROMIUM} not found")
    return CHROMIUM


# Per module, not per session: Playwright's sync API keeps its event loop running in the main thread
# while it is open, and every later asyncio.run() in the session (tests/include/test_events.py...)
# would fail with "cannot be called from a running event loop".
@pytest.fixture(scope="module")
def playwright_driver():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the package is in the lock; a broken install should say so
        _unavailable(f"playwright does not import: {exc}")
    chromium_path()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver):
    """One headless Chromium per test module; each test opens its own context (cookies apart)."""
    instance = playwright_driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield instance
    instance.close()


@pytest.fixture()
def page(browser):
    """A fresh page in a fresh context (no cookies shared with other tests), desktop-sized."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    yield page
    context.close()


def launch_with_extension(playwright_driver, user_data_dir: Path, extension_dir: Path):
    """A headless persistent context (extensions need one) with the unpacked extension loaded."""
    return playwright_driver.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=chromium_path(),
        headless=True,
        viewport=DESKTOP,
        args=[*CHROMIUM_ARGS, f"--disable-extensions-except={extension_dir}", f"--load-extension={extension_dir}"],
    )


# A <video>'s current frame read back as a page script draws it (CORS-clean assets: no taint): the
# share of fully transparent and of fully opaque pixels, the top-left corner's alpha, the frame's
# width and the playback time it was drawn at.
VIDEO_ALPHA = """(video) => {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let transparent = 0, opaque = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] === 0) transparent++; else if (pixels[i] === 255) opaque++; }
  const total = pixels.length / 4;
  return {transparent: transparent / total, opaque: opaque / total, corner: pixels[3], width: canvas.width, time: video.currentTime};
}"""


def video_alpha(video) -> dict:
    """The alpha of the frame a <video> shows now (``video``: a Playwright locator of it; CSS
    locators reach into open shadow roots, e.g. ``page.locator("bit-buddy video:not([hidden])")``)."""
    return video.evaluate(VIDEO_ALPHA)


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot under var/screenshots/NAME.png for a reviewer; returns the path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
