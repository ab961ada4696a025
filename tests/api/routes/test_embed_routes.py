"""Embedding over HTTP: asset headers (Range, CORS, CORP, caching), the widget's buddy info, the
transparent embed page, oEmbed, the share page's snippet, embed.js and the extension package."""

from __future__ import annotations

import io
import json
import zipfile
from html.parser import HTMLParser
from urllib.parse import quote

from api.assets import asset_version
from api.embedding import embed_snippet
from include.db import session_scope
from include.models import Generation
from include.settings import get_settings
from tests.api.routes.test_share_routes import FILES, published_generation
from tests.api.support import auth, make_user

# A file long enough for ranges in the middle and at both ends.
VIDEO = bytes(range(256)) * 40


def publish_with_video(user=None):
    from include import generations, storage

    generation = published_generation(user=user)
    with storage.open_write(generations.asset_key(generation.id, "webm")) as out:
        out.write(VIDEO)
    return generation


def test_range_requests_answer_206_with_exactly_the_asked_bytes(client):
    generation = publish_with_video()
    url = f"/b/{generation.slug}/buddy.webm"
    size = len(VIDEO)
    for header, start, end in (
        ("bytes=0-0", 0, 0),
        ("bytes=100-1999", 100, 1999),
        ("bytes=9000-", 9000, size - 1),
        ("bytes=-16", size - 16, size - 1),
        ("bytes=10000-99999", 10000, size - 1),  # an end past the file is cut to it
    ):
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == VIDEO[start : end + 1], header
        assert response.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert response.headers["content-length"] == str(end - start + 1)
        assert response.headers["content-type"] == "video/webm"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == VIDEO and whole.headers["accept-ranges"] == "bytes"


def test_unsatisfiable_ranges_answer_416_and_several_ranges_the_whole_file(client):
    generation = publish_with_video()
    url = f"/b/{generation.slug}/buddy.webm"
    for header in (f"bytes={len(VIDEO)}-", "bytes=500-100", "bytes=-0", "items=0-5"):
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{len(VIDEO)}"
    several = client.get(url, headers={"Range": "bytes=0-5,10-20"})
    assert several.status_code == 200 and several.content == VIDEO
    stale = client.get(url, headers={"Range": "bytes=0-5", "If-Range": '"another-version"'})
    assert stale.status_code == 200 and stale.content == VIDEO


def test_assets_are_cross_origin_readable_cached_by_version_and_revalidated(client):
    owner, owner_key = make_user("owner@example.com")
    generation = publish_with_video(owner)
    version = asset_version(generation, "webm")
    versioned = client.get(f"/b/{generation.slug}/buddy.webm?v={version}", headers={"Range": "bytes=0-9"})
    assert versioned.headers["access-control-allow-origin"] == "*"
    assert versioned.headers["cross-origin-resource-policy"] == "cross-origin"
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["etag"] == f'"{version}"'
    assert "set-cookie" not in versioned.headers
    unversioned = client.get(f"/b/{generation.slug}/buddy.webm?v=old")
    assert "immutable" not in unversioned.headers["cache-control"]
    again = client.get(f"/b/{generation.slug}/buddy.webm", headers={"If-None-Match": f'"{version}"'})
    assert again.status_code == 304 and again.content == b""
    # The owner's download route answers ranges with the same headers, privately cached.
    _, stranger_key = make_user("stranger@example.com")
    private = client.get(f"/api/generations/{generation.id}/assets/buddy.webm", headers={**auth(owner_key), "Range": "bytes=5-9"})
    assert private.status_code == 206 and private.content == VIDEO[5:10]
    assert private.headers["access-control-allow-origin"] == "*"
    assert private.headers["cross-origin-resource-policy"] == "cross-origin"
    assert private.headers["cache-control"].startswith("private")
    assert client.get(f"/api/generations/{generation.id}/assets/buddy.webm", headers=auth(stranger_key)).status_code == 404


def test_buddy_json_gives_the_widget_versioned_asset_urls_or_404(client):
    generation = published_generation()
    response = client.get(f"/b/{generation.slug}/buddy.json")
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "*"
    info = response.json()
    base = f"{get_settings().public_base_url}/b/{generation.slug}"
    assert info["slug"] == generation.slug and info["share_url"] == base and info["embed_url"] == f"{base}/embed"
    assert info["assets"]["webm"] == f"{base}/buddy.webm?v={asset_version(generation, 'webm')}"
    assert set(info["assets"]) == set(FILES)  # no walk loop in this generation: no walk keys
    missing = client.get("/b/nosuchslug/buddy.json")
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == "*"


def test_walk_loop_assets_are_listed_and_served_when_the_generation_has_them(client):
    from include import generations, storage

    user, _ = make_user("walker@example.com")
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt="walk", upload_path="uploads/w/photo.jpg")
        session.add(generation)
    assets = {}
    for kind, data in {**FILES, "walk_webm": b"walk webm", "walk_webp": b"walk webp"}.items():
        assets[kind] = generations.asset_key(generation.id, kind)
        with storage.open_write(assets[kind]) as out:
            out.write(data)
    generation = generations.mark_succeeded(generation.id, assets)
    info = client.get(f"/b/{generation.slug}/buddy.json").json()
    assert info["assets"]["walk_webm"].split("?")[0].endswith("/walk.webm")
    response = client.get(f"/b/{generation.slug}/walk.webm")
    assert response.content == b"walk webm" and response.headers["content-type"] == "video/webm"
    assert client.get(f"/b/{generation.slug}/walk.webp").headers["content-type"] == "image/webp"


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def test_embed_page_is_transparent_and_frameable(client):
    generation = published_generation()
    response = client.get(f"/b/{generation.slug}/embed")
    assert response.status_code == 200
    assert "x-frame-options" not in response.headers
    assert response.headers["content-security-policy"] == "frame-ancestors *"
    page = response.text
    assert "background: transparent" in page and "radial-gradient" not in page and "Made with" not in page
    assert any(tag == "video" for tag, _ in _tags(page))
    assert client.get("/b/nosuchslug/embed").status_code == 404


def test_oembed_answers_rich_json_for_a_share_url_and_404_or_501_otherwise(client):
    generation = published_generation()
    share = f"{get_settings().public_base_url}/b/{generation.slug}"
    response = client.get(f"/oembed?url={quote(share, safe='')}&format=json&maxwidth=200")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    answer = json.loads(response.text)
    assert answer["version"] == "1.0" and answer["type"] == "rich" and answer["provider_name"] == "BitBuddies"
    assert answer["width"] == answer["height"] == 200
    assert answer["thumbnail_url"].split("?")[0] == f"{share}/poster.png"
    [(tag, attrs)] = _tags(answer["html"])
    assert tag == "iframe" and attrs["src"] == f"{share}/embed" and attrs["width"] == "200"
    assert client.get(f"/oembed?url={quote(share + '/embed', safe='')}").status_code == 200
    assert client.get(f"/oembed?url={quote(share, safe='')}&format=xml").status_code == 501
    for unknown in (
        f"{get_settings().public_base_url}/b/nosuchslug",
        f"https://elsewhere.example/b/{generation.slug}",  # another site's URL is not ours to embed
        f"{get_settings().public_base_url}/buddies",
    ):
        assert client.get("/oembed", params={"url": unknown}).status_code == 404, unknown


def test_share_page_offers_the_snippet_with_a_copy_button_and_oembed_discovery(client):
    generation = published_generation()
    page = client.get(f"/b/{generation.slug}").text
    links = [attrs for tag, attrs in _tags(page) if tag == "link" and attrs.get("rel") == "alternate"]
    assert links[0]["type"] == "application/json+oembed"
    discovered = client.get(links[0]["href"].removeprefix(get_settings().public_base_url))
    assert discovered.status_code == 200 and discovered.json()["type"] == "rich"
    snippet = embed_snippet(generation.slug)
    assert f'<script src="{get_settings().public_base_url}/embed.js" async></script>' in snippet
    assert f'<bit-buddy slug="{generation.slug}"></bit-buddy>' in snippet
    from html import escape

    assert escape(snippet) in page
    assert 'id="copy-snippet"' in page and "Copy embed code" in page


def test_embed_js_and_the_extension_package_are_served(client):
    script = client.get("/embed.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["access-control-allow-origin"] == "*"
    assert client.get("/embed.js", headers={"If-None-Match": script.headers["etag"]}).status_code == 304
    package = client.get("/extension.zip")
    assert package.status_code == 200 and package.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(package.content)) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("bitbuddies-extension/manifest.json"))
        assert archive.read("bitbuddies-extension/embed.js") == script.content  # one widget, copied in
    assert manifest["manifest_version"] == 3
    for script_name in manifest["content_scripts"][0]["js"]:
        assert f"bitbuddies-extension/{script_name}" in names
    assert f"bitbuddies-extension/{manifest['action']['default_popup']}" in names
    assert f"bitbuddies-extension/{manifest['background']['service_worker']}" in names
