"""``/b/{slug}``: the public share page and the public asset files."""

from __future__ import annotations

from api.assets import asset_version
from include import generations, storage
from include.db import session_scope
from include.models import Generation
from include.settings import get_settings
from tests.api.support import make_user

FILES = {"webm": b"\x1aE\xdf\xa3 vp9 alpha", "webp": b"RIFF....WEBP", "gif": b"GIF89a...", "poster": b"\x89PNG...."}


def published_generation(prompt: str = "a <happy> pirate", user=None) -> Generation:
    user = user or make_user()[0]
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt=prompt, upload_path="uploads/x/photo.jpg")
        session.add(generation)
    assets = {}
    for kind, data in FILES.items():
        assets[kind] = generations.asset_key(generation.id, kind)
        with storage.open_write(assets[kind]) as out:
            out.write(data)
    return generations.mark_succeeded(generation.id, assets)


def test_share_page_plays_the_webm_with_image_fallbacks_and_og_tags(client):
    generation = published_generation()
    response = client.get(f"/b/{generation.slug}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    base = f"{get_settings().public_base_url}/b/{generation.slug}"

    def url(kind: str, name: str) -> str:
        return f"{base}/{name}?v={asset_version(generation, kind)}"

    assert "<video" in page and "autoplay loop muted playsinline" in page
    assert f'<source src="{url("webm", "buddy.webm")}" type="video/webm">' in page
    assert f'<source srcset="{url("webp", "buddy.webp")}" type="image/webp">' in page
    assert f'src="{url("gif", "buddy.gif")}"' in page
    assert f'<meta property="og:image" content="{url("poster", "poster.png")}">' in page
    assert "pirate" not in page  # the prompt is private
    assert '<meta name="robots" content="noindex">' in page and response.headers["x-robots-tag"] == "noindex"


def test_the_owner_may_show_a_title_which_is_escaped(client):
    from include import accounts

    generation = published_generation()
    key = accounts.create_api_key(generation.user_id, "test").key
    headers = {"Authorization": f"Bearer {key}"}
    updated = client.patch(f"/api/generations/{generation.id}", json={"share_title": "Captain <Ada>"}, headers=headers)
    assert updated.status_code == 200 and updated.json()["share_title"] == "Captain <Ada>"
    page = client.get(f"/b/{generation.slug}").text
    assert "<title>A Bit Buddy: Captain &lt;Ada&gt;</title>" in page and "pirate" not in page
    assert client.patch(f"/api/generations/{generation.id}", json={"share_title": "a\x07b"}, headers=headers).status_code == 422
    client.patch(f"/api/generations/{generation.id}", json={"share_title": None}, headers=headers)
    assert "<title>A Bit Buddy</title>" in client.get(f"/b/{generation.slug}").text


def test_share_page_is_404_for_unknown_and_unfinished(client):
    assert client.get("/b/nosuchslug").status_code == 404
    user, _ = make_user("bob@example.com")
    with session_scope() as session:
        queued = Generation(user_id=user.id, prompt="hi", upload_path="uploads/y/photo.jpg")
        session.add(queued)
    assert client.get(f"/b/{queued.slug}").status_code == 404
    assert client.get(f"/b/{queued.slug}/buddy.webm").status_code == 404


def test_public_assets_stream_with_content_types_and_cache_headers(client):
    generation = published_generation()
    expected = {
        "buddy.webm": ("video/webm", FILES["webm"]),
        "buddy.webp": ("image/webp", FILES["webp"]),
        "buddy.gif": ("image/gif", FILES["gif"]),
        "poster.png": ("image/png", FILES["poster"]),
    }
    for name, (content_type, data) in expected.items():
        response = client.get(f"/b/{generation.slug}/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == content_type and response.content == data
        assert "immutable" not in response.headers["cache-control"]  # unversioned: short-lived
    assert client.get(f"/b/{generation.slug}/photo.jpg").status_code == 404
