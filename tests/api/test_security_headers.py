"""Security headers on the API, the pages and the share page; the share page still runs in a browser under its CSP."""

from __future__ import annotations

from api.security_headers import EMBED_CSP, PAGE_CSP
from tests.api.routes.test_share_routes import published_generation
from tests.browser import browser, page, playwright_driver  # noqa: F401  (fixtures)


def test_every_answer_is_nosniff_with_a_referrer_policy(client):
    for path in ("/api/me", "/b/nosuch", "/openapi.json", "/api/tokens/packs"):
        response = client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "same-origin", path
    refused = client.post("/api/generations", content=b"x" * 10)  # the body limit's own answer (401)
    assert refused.status_code == 401 and refused.headers["x-content-type-options"] == "nosniff"


def test_pages_get_a_csp_that_forbids_framing_and_foreign_scripts(client):
    generation = published_generation()
    share = client.get(f"/b/{generation.slug}")
    csp = share.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert share.headers["x-frame-options"] == "DENY"
    page = client.get(f"/g/{generation.id}")
    assert page.headers["content-security-policy"] == PAGE_CSP and page.headers["x-robots-tag"] == "noindex"
    assert "frame-ancestors 'none'" in PAGE_CSP and "frame-ancestors *" in EMBED_CSP
    assert "cdn.jsdelivr.net" in client.get("/docs").headers["content-security-policy"]


def test_the_share_page_plays_under_its_csp_in_chromium(client, page):
    """The page's inline fallback script is allowed by its hash: no CSP violation in a real browser."""
    generation = published_generation()
    html = client.get(f"/b/{generation.slug}")
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    from include.settings import get_settings

    document = f"{get_settings().public_base_url}/b/{generation.slug}"  # assets are same-origin under it
    page.route(
        "**/*",
        lambda route: route.fulfill(status=200, headers=dict(html.headers), body=html.text)
        if route.request.url == document
        else route.fulfill(status=404, body=""),
    )
    page.goto(document)
    page.wait_for_timeout(300)
    assert violations == []
    # The fallback script ran (Chromium plays VP9: the video stays) and the page is whole.
    assert page.locator("#buddy-video").count() == 1
