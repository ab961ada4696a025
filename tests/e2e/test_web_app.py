"""The web app in a real browser (Debian's Chromium through Playwright) over the real stack.

One journey walks what a person does: sign up -> create a buddy from a photo (progress reaches
the end, a reload mid-run catches up) -> the video plays with transparent pixels (read back from
a canvas) over a dark background -> download each format -> buy tokens through Stripe Checkout
(the Stripe fake's hosted page) -> order a sticker sheet, pay, download the PDF by clicking ->
API keys on the account page; on the way: a form without its CSRF token is refused, another
person gets 404 for every page of the first, and axe-core finds no serious or critical
accessibility violation on any page. A second test makes a generation fail (the model server's
fault injection) and checks the reason and the refund on the page.

Screenshots of every page at phone and desktop width go to var/screenshots/ (git-ignored).
"""

from __future__ import annotations

import io
import re
import time

import httpx
import pypdfium2 as pdfium
import pytest
from skimage import data

from tests.browser import DESKTOP, PHONE, browser, playwright_driver, screenshot, video_alpha  # noqa: F401  (fixtures)
from tests.e2e.conftest import jpeg_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

PASSWORD = "tangerine bicycle orbit"
SIGNATURES = {"WebM video": b"\x1a\x45\xdf\xa3", "WebP animation": b"RIFF", "GIF": b"GIF8", "PNG still": b"\x89PNG"}
def shoot(page, name: str) -> None:
    """The page at phone and desktop width (full page), for a reviewer."""
    for label, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        page.wait_for_timeout(150)
        screenshot(page, f"{name}-{label}")


def assert_accessible(page, where: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page).response["violations"]
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"accessibility violations on {where}: {bad}"


def sign_up(page, base: str, email: str) -> None:
    page.goto(f"{base}/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{base}/")


def create_buddy(page, photo_path, prompt: str, motion: str) -> str:
    page.get_by_label("Photo").set_input_files(str(photo_path))
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Motion").select_option(motion)
    page.get_by_role("button", name="Create buddy").click()
    page.wait_for_url(re.compile(r".*/buddies/[0-9a-f]{32}$"))
    return page.url.rsplit("/", 1)[1]


def download(page, locator) -> bytes:
    with page.expect_download() as info:
        locator.click()
    path = info.value.path()
    return open(path, "rb").read()


def test_a_person_makes_a_buddy_and_orders_stickers_in_the_browser(stack, browser, tmp_path):  # noqa: F811
    base = stack.cfg.api_url
    photo = tmp_path / "me.jpg"
    photo.write_bytes(jpeg_bytes(data.astronaut()))
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True, bypass_csp=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    try:
        # Welcome and sign up: 3 free tokens.
        page.goto(f"{base}/")
        assert_accessible(page, "/ (welcome)")
        shoot(page, "welcome")
        page.goto(f"{base}/signup")
        assert_accessible(page, "/signup")
        shoot(page, "signup")
        sign_up(page, base, f"web{time.time_ns()}@example.com")
        assert "You have 3 tokens" in page.locator(".balance").inner_text()

        # Create: the preview shows the chosen photo before anything is uploaded.
        page.get_by_label("Photo").set_input_files(str(photo))
        page.wait_for_selector("#preview:not([hidden])")
        assert page.eval_on_selector("#preview", "img => img.naturalWidth") > 0
        page.get_by_label("Prompt").fill("a brave astronaut waving hello")
        assert_accessible(page, "/ (create)")
        shoot(page, "create")
        gid = create_buddy(page, photo, "a brave astronaut waving hello", "wave")

        # Progress: stages tick off live; a reload mid-run catches up on what it missed.
        page.wait_for_selector("#stages li.done", timeout=120_000)
        assert_accessible(page, "/buddies/{id} (progress)")
        shoot(page, "progress")
        done_before = page.locator("#stages li.done").count()
        page.reload()
        page.wait_for_function(f"document.querySelectorAll('#stages li.done').length >= {done_before} || !document.getElementById('stages')")

        # The result: the page turns into the player once the stream says succeeded.
        video = page.locator("#buddy-video")
        video.wait_for(state="visible", timeout=480_000)
        page.wait_for_function("() => { const v = document.getElementById('buddy-video'); return v.readyState >= 2 && v.currentTime > 0.2; }", timeout=30_000)
        frame = video_alpha(page.locator("#buddy-video"))
        assert frame["width"] >= 256
        assert frame["transparent"] > 0.2, f"the buddy's background should be transparent: {frame}"
        assert frame["opaque"] > 0.02, f"the buddy itself should be opaque: {frame}"
        page.get_by_label("Dark").check()
        assert "bg-dark" in page.locator("#stage").get_attribute("class")
        page.get_by_label("Photo").check()
        assert page.locator("#bg-photo").is_visible()
        page.get_by_label("Dark").check()
        page.get_by_role("button", name="Copy link").click()
        page.wait_for_function("document.getElementById('copied').textContent.includes('Copied')")
        assert page.evaluate("navigator.clipboard.readText()") == page.locator("#share-url").input_value()
        assert_accessible(page, "/buddies/{id} (result)")
        shoot(page, "result")
        # WebP and GIF are encoded after the buddy is published: "preparing" until they are ready,
        # then the page turns them into links without a reload.
        page.wait_for_function(
            f"document.querySelectorAll('.downloads a').length === {len(SIGNATURES)} && !document.querySelector('[data-pending-format]')",
            timeout=240_000,
        )
        for name, signature in SIGNATURES.items():
            body = download(page, page.get_by_role("link", name=name))
            assert body.startswith(signature) and len(body) > 1000, name

        page.goto(f"{base}/buddies")
        assert page.locator(".tile").count() == 1
        assert_accessible(page, "/buddies")
        shoot(page, "gallery")

        # A form posted without its CSRF token (the browser's cookies, no token) is refused.
        refused = page.request.post(f"{base}/account/keys", form={"name": "forged"})
        assert refused.status == 403

        # Buy tokens: Stripe Checkout (the fake's hosted page), then the return page.
        page.goto(f"{base}/tokens")
        assert_accessible(page, "/tokens")
        shoot(page, "tokens")
        page.get_by_role("button", name=re.compile(r"^Buy 10 tokens")).click()
        page.get_by_role("button", name="Pay").click()
        page.wait_for_url(re.compile(r".*/tokens/return\?session_id=cs_.*"))
        page.get_by_text("Payment received, 10 tokens added.").wait_for(timeout=30_000)
        assert_accessible(page, "/tokens/return")
        shoot(page, "tokens-return")

        # Order stickers: the preview is rendered by the PDF's code; pay; download the PDF.
        page.goto(f"{base}/orders/new")
        page.locator(f'input[name="buddy"][value="{gid}"]').check()
        page.wait_for_function("() => { const img = document.getElementById('sheet-preview'); return img.src.includes('preview.png') && img.complete && img.naturalWidth > 0; }", timeout=60_000)
        page.get_by_role("button", name="Order stickers").click()
        assert page.locator("#address1-error").inner_text() == "Address is required."  # per-field errors
        page.locator(f'input[name="buddy"][value="{gid}"]').check()
        page.get_by_label("Full name").fill("Ada Lovelace")
        page.get_by_label("Address", exact=True).fill("12 St James's Square")
        page.get_by_label("City").fill("London")
        page.get_by_label("Postal code").fill("SW1Y 4JH")
        page.get_by_label("Country code (2 letters, e.g. US, GB, DE)").fill("GB")
        page.wait_for_function("() => document.getElementById('sheet-preview').src.includes('preview.png') && document.getElementById('sheet-preview').naturalWidth > 0", timeout=60_000)
        assert_accessible(page, "/orders/new")
        shoot(page, "order-new")
        page.get_by_role("button", name="Order stickers").click()
        page.wait_for_url(re.compile(r".*/orders/[0-9a-f]{32}$"))
        order_url = page.url
        page.get_by_role("button", name="Pay").click()  # ours
        page.get_by_role("button", name="Pay").click()  # Stripe's checkout page
        page.wait_for_url(re.compile(r".*/orders/[0-9a-f]{32}\?checkout=success$"))
        pdf_link = page.get_by_role("link", name="Download PDF")
        pdf_link.wait_for(timeout=300_000)  # the page refreshes itself until the sheet is rendered
        pdf = download(page, pdf_link)
        document = pdfium.PdfDocument(io.BytesIO(pdf))
        assert len(document) == 1 and abs(document[0].get_width() / 72 * 25.4 - 210) < 1  # one A4 sheet
        document.close()
        assert_accessible(page, "/orders/{id}")
        shoot(page, "order")

        # Account: balance and history, an API key shown once that works, then revoked.
        page.goto(f"{base}/account")
        page.get_by_label("Key name").fill("laptop")
        page.get_by_role("button", name="Create key").click()
        key = page.get_by_label("New API key").input_value()
        me = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {key}"}).json()
        assert me["balance"] == 12  # 3 free - 1 buddy + 10 bought
        history = page.locator("table").last.inner_text()
        assert "Free tokens" in history and "Buddy made" in history and "Token pack" in history
        assert_accessible(page, "/account")
        shoot(page, "account")
        page.get_by_role("button", name="Revoke laptop").click()
        assert httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401

        # Another person sees none of it.
        other = browser.new_context(viewport=DESKTOP)
        try:
            intruder = other.new_page()
            sign_up(intruder, base, f"other{time.time_ns()}@example.com")
            for path in (f"/buddies/{gid}", order_url.removeprefix(base), f"/api/generations/{gid}/events"):
                response = intruder.goto(f"{base}{path}")
                assert response.status == 404, path
        finally:
            other.close()
    finally:
        context.close()


def test_a_failed_buddy_shows_the_reason_and_the_refund(stack, browser, tmp_path):  # noqa: F811
    base = stack.cfg.api_url
    photo = tmp_path / "me.jpg"
    photo.write_bytes(jpeg_bytes(data.astronaut()))
    faults = f"{stack.cfg.model_server_url}/_admin/faults"
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    httpx.post(faults, json={"fail_rate": {"bitbuddies/animate": 1.0}}).raise_for_status()
    try:
        sign_up(page, base, f"fail{time.time_ns()}@example.com")
        create_buddy(page, photo, "jump for joy", "jump")
        page.get_by_text("Your token was refunded.").wait_for(timeout=480_000)
        assert "animat" in page.locator(".failure-reason").inner_text().lower()
        assert re.search(r"\b3\b", page.locator(".balance-pill").inner_text())  # the token is back
        assert_accessible(page, "/buddies/{id} (failed)")
        shoot(page, "failed")
    finally:
        httpx.post(faults, json={}).raise_for_status()
        context.close()
