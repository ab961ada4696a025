"""A real buddy on other people's pages, in real Chromium over the real stack.

One buddy is made through the pipeline for the module. The widget is checked on hand-written pages
served from another port with the two-line snippet: it plays with transparent pixels over the page's
own colour, walks, waves when clicked, leaks no global, survives hostile CSS, stands still under
reduced motion and removes itself for an unknown buddy. The Chrome extension, loaded unpacked, is
configured in its popup and shows the chosen buddy on a page of another origin until switched off
for that site.
"""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data

from tests.browser import DESKTOP, browser, playwright_driver, screenshot, video_alpha  # noqa: F401  (fixtures)
from tests.e2e.conftest import jpeg_bytes, wait_for_generation
from tests.fakes.static_site import serve_pages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PAGE_COLOUR = (46, 125, 91)  # the host page's background: #2e7d5b
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Someone's blog</title>
<style>body {{ margin: 0; padding: 2rem; background: #2e7d5b; color: #fff; font: 18px Georgia, serif; }} {css}</style>
</head><body><h1>My cooking blog</h1><p>Today: soup.</p>
{snippet}
</body></html>
"""
HOSTILE_CSS = "* { display: block !important; width: 10px !important; height: 10px !important; position: static !important; }"

BUDDY_BOX = """() => {
  const host = document.querySelector('bit-buddy');
  const buddy = host && host.shadowRoot && host.shadowRoot.querySelector('.buddy');
  if (!buddy) return null;
  const r = buddy.getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height, bottom: r.bottom, state: buddy.dataset.state};
}"""
VIDEO_PLAYING = """(selector) => {
  const host = document.querySelector(selector);
  const video = host && host.shadowRoot && host.shadowRoot.querySelector('video:not([hidden])');
  return !!video && video.readyState >= 3 && !video.paused && video.currentTime > 0;
}"""
SHOWN_CLIP = """() => {
  const root = document.querySelector('bit-buddy').shadowRoot;
  const video = root.querySelector('video:not([hidden])');
  return [root.querySelector('.buddy').dataset.state, video.src.includes('clip=walk') ? 'walk' : 'idle'];
}"""


def _centre(box: dict) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.fixture(scope="module")
def buddy(stack, api, make_user):
    """One real buddy for the module: (server URL, slug, the owner's API key)."""
    key = make_user(tokens=2)
    response = api.post(
        "/api/generations",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": ("photo.jpg", jpeg_bytes(data.astronaut()), "image/jpeg")},
        data={"prompt": "wave hello"},
    )
    assert response.status_code == 202, response.text
    done = wait_for_generation(api, key, response.json()["id"], timeout=600)  # generous: a shared, busy machine
    assert done["status"] == "succeeded", done
    return stack.cfg.api_url, done["share_url"].rsplit("/", 1)[1], key


def snippet(server: str, slug: str) -> str:
    return f'<script src="{server}/embed.js" async></script>\n<bit-buddy slug="{slug}"></bit-buddy>'


def wait_until(check, timeout: float = 20.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_widget_walks_on_another_sites_page_transparent_and_without_globals(browser, buddy):
    server, slug, _ = buddy
    pages = {"with.html": PAGE.format(css="", snippet=snippet(server, slug)), "bare.html": PAGE.format(css="", snippet="")}
    with serve_pages(pages) as site:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(f"{site}/bare.html")
        bare_globals = set(page.evaluate("Object.keys(window)"))
        page.goto(f"{site}/with.html")
        page.wait_for_function(VIDEO_PLAYING, arg="bit-buddy", timeout=30000)
        assert set(page.evaluate("Object.keys(window)")) == bare_globals  # no global name leaks
        assert page.evaluate("typeof customElements.get('bit-buddy')") == "function"  # the one name it adds
        assert page.evaluate("document.cookie") == "" and context.cookies() == []

        box = page.evaluate(BUDDY_BOX)
        assert round(box["width"]) == round(box["height"]) == 120, box  # (a moving box has sub-pixel sizes)
        assert abs(box["bottom"] - DESKTOP["height"]) <= 1  # standing on the viewport's bottom edge

        alpha = video_alpha(page.locator("bit-buddy video:not([hidden])"))
        assert alpha["corner"] == 0 and alpha["transparent"] > 0.2 and alpha["opaque"] > 0.1, alpha
        # Around the character, the page's own colour shows through the video.
        shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
        box = page.evaluate(BUDDY_BOX)
        corner = shot[int(box["y"]) + 3, int(box["x"]) + 3]
        assert np.abs(corner - PAGE_COLOUR).max() <= 6, corner
        screenshot(page, "embed-widget-on-a-page", full_page=False)

        # It walks: its position changes over time (it may idle a few seconds first).
        start = box["x"]
        assert wait_until(lambda: abs(page.evaluate(BUDDY_BOX)["x"] - start) > 20), "the buddy did not move"

        # A click makes it wave.
        page.mouse.click(*_centre(page.evaluate(BUDDY_BOX)))
        assert wait_until(lambda: page.evaluate(BUDDY_BOX)["state"] == "waving", timeout=3)

        # Dragged up and let go, it falls back to the bottom edge and walks on.
        box = page.evaluate(BUDDY_BOX)
        page.mouse.move(box["x"] + 60, box["y"] + 60)
        page.mouse.down()
        page.mouse.move(box["x"] + 160, box["y"] - 200, steps=8)
        lifted = page.evaluate(BUDDY_BOX)
        assert lifted["state"] == "dragging" and lifted["bottom"] < DESKTOP["height"] - 150, lifted
        page.mouse.up()
        assert wait_until(lambda: abs(page.evaluate(BUDDY_BOX)["bottom"] - DESKTOP["height"]) <= 1, timeout=5)

        # A hidden tab stops it: the video pauses and it stays where it is until the tab is back.
        page.evaluate("""() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        hidden_at = page.evaluate(BUDDY_BOX)
        time.sleep(2)
        assert page.evaluate(BUDDY_BOX)["x"] == hidden_at["x"]
        assert page.evaluate("document.querySelector('bit-buddy').shadowRoot.querySelector('video').paused")
        page.evaluate("""() => {
            delete document.hidden;
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        page.wait_for_function(VIDEO_PLAYING, arg="bit-buddy", timeout=10000)

        # Its close button takes it away, leaving nothing on the page.
        page.evaluate("document.querySelector('bit-buddy').shadowRoot.querySelector('.close').click()")
        assert page.evaluate("document.querySelector('bit-buddy')") is None
        context.close()


def test_widget_is_polite_under_hostile_css_reduced_motion_and_for_unknown_buddies(browser, buddy):
    server, slug, _ = buddy
    # A buddy with a walk loop: the real buddy's info, its WebM standing in for the walk loop.
    info = httpx.get(f"{server}/b/{slug}/buddy.json").json()
    info["assets"]["walk_webm"] = info["assets"]["webm"] + "&clip=walk"
    # (server=".": its buddy.json comes from this site, next to the page)
    walker = f'<script src="{server}/embed.js" async></script>\n<bit-buddy slug="walker" server="."></bit-buddy>'
    pages = {
        # (and the one-line form of the snippet)
        "hostile.html": PAGE.format(css=HOSTILE_CSS, snippet=f'<script src="{server}/embed.js" data-buddy="{slug}" async></script>'),
        "calm.html": PAGE.format(css="", snippet=snippet(server, slug)),
        "gone.html": PAGE.format(css="", snippet=snippet(server, "nosuchbuddy")),
        "walker.html": PAGE.format(css="", snippet=walker),
        "b/walker/buddy.json": json.dumps(info),
    }
    with serve_pages(pages) as site:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(f"{site}/hostile.html")
        page.wait_for_function(VIDEO_PLAYING, arg="bit-buddy", timeout=30000)
        box = page.evaluate(BUDDY_BOX)
        assert round(box["width"]) == round(box["height"]) == 120 and abs(box["bottom"] - DESKTOP["height"]) <= 1, box
        assert video_alpha(page.locator("bit-buddy video:not([hidden])"))["transparent"] > 0.2
        screenshot(page, "embed-widget-hostile-css", full_page=False)

        # It walks with the walk loop where the buddy has one, and idles with the idle loop.
        page.goto(f"{site}/walker.html")
        page.wait_for_function(VIDEO_PLAYING, arg="bit-buddy", timeout=30000)
        assert wait_until(lambda: page.evaluate(SHOWN_CLIP) == ["walking", "walk"]), page.evaluate(SHOWN_CLIP)
        page.mouse.click(*_centre(page.evaluate(BUDDY_BOX)))
        assert wait_until(lambda: page.evaluate(SHOWN_CLIP) == ["waving", "idle"], timeout=3)

        page.goto(f"{site}/gone.html")
        assert wait_until(lambda: page.evaluate("document.querySelector('bit-buddy') === null"), timeout=10)
        context.close()

        calm = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
        page = calm.new_page()
        page.goto(f"{site}/calm.html")
        page.wait_for_function(VIDEO_PLAYING, arg="bit-buddy", timeout=30000)  # the idle loop plays
        first = page.evaluate(BUDDY_BOX)
        time.sleep(3)
        later = page.evaluate(BUDDY_BOX)
        assert first["state"] == later["state"] == "still"
        assert (first["x"], first["y"]) == (later["x"], later["y"])
        calm.close()


def test_extension_shows_the_chosen_buddy_on_another_origin_until_switched_off(playwright_driver, buddy, tmp_path):  # noqa: F811
    from api.extension import write_extension
    from tests.browser import launch_with_extension

    server, slug, key = buddy
    extension_dir = write_extension(tmp_path / "extension")  # the folder plus the widget's embed.js
    with serve_pages({"index.html": PAGE.format(css="", snippet="")}) as site:
        context = launch_with_extension(playwright_driver, tmp_path / "profile", extension_dir)
        try:
            worker = context.service_workers[0] if context.service_workers else context.wait_for_event("serviceworker")
            extension_id = worker.url.split("/")[2]

            popup = context.new_page()
            popup.goto(f"chrome-extension://{extension_id}/popup.html")
            popup.get_by_label("Server").fill(server)
            popup.get_by_label("API key").fill(key)
            popup.get_by_role("button", name="Sign in").click()
            choice = popup.locator(f'#buddies button[data-slug="{slug}"]')
            choice.wait_for(timeout=15000)
            choice.click()
            popup.wait_for_selector(f'#buddies button[data-slug="{slug}"][aria-pressed="true"]')
            screenshot(popup, "extension-popup")

            page = context.new_page()
            page.goto(f"{site}/index.html")
            page.wait_for_function(VIDEO_PLAYING, arg="[data-bitbuddies]", timeout=30000)
            video_src = page.evaluate("document.querySelector('[data-bitbuddies]').shadowRoot.querySelector('video').src")
            assert f"/b/{slug}/buddy.webm" in video_src
            assert key not in page.content() and key not in video_src  # the key stays in the extension
            screenshot(page, "extension-buddy-on-a-page", full_page=False)

            # Its close button switches it off for this site: gone after a reload, listed in the popup.
            page.evaluate("document.querySelector('[data-bitbuddies]').shadowRoot.querySelector('.close').click()")
            page.reload()
            time.sleep(3)
            assert page.evaluate("document.querySelector('[data-bitbuddies]')") is None
            popup.reload()
            popup.locator("#off-sites li", has_text=site.split("//")[1]).wait_for(timeout=5000)
        finally:
            context.close()
