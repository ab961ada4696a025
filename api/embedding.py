"""Putting a buddy on other people's pages: the embed snippet, the widget's public buddy info and
the oEmbed answer. The routes that serve them are in :mod:`api.routes.embed` and
:mod:`api.routes.share`; the widget itself is the static ``api/static/embed.js``.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from urllib.parse import quote, urlsplit

from api.presenters import asset_urls
from include.generations import share_url
from include.models import Generation
from include.settings import get_settings

EMBED_JS = Path(__file__).resolve().parent / "static" / "embed.js"
# The frame oEmbed consumers get when they ask for no size: the buddy's square loop, smallish.
OEMBED_SIZE = 320
PROVIDER_NAME = "BitBuddies"


def _base_url() -> str:
    return get_settings().public_base_url.rstrip("/")


def embed_snippet(slug: str) -> str:
    """The two lines a site owner pastes into a page to have the buddy ``slug`` walk along it."""
    base = _base_url()
    return f'<script src="{base}/embed.js" async></script>\n<bit-buddy slug="{escape(slug, quote=True)}"></bit-buddy>'


def buddy_title(generation: Generation) -> str:
    return f"A Bit Buddy: {generation.prompt}"


def buddy_info(generation: Generation) -> dict:
    """What the widget needs to show a published buddy (``GET /b/{slug}/buddy.json``)."""
    page = share_url(generation)
    return {
        "slug": generation.slug,
        "title": buddy_title(generation),
        "share_url": page,
        "embed_url": f"{page}/embed",
        "assets": asset_urls(generation),
    }


def slug_from_share_url(url: str) -> str | None:
    """The slug of a share page URL of this server (``{public base}/b/{slug}``), else ``None``."""
    parts = urlsplit(url.strip())
    ours = urlsplit(_base_url())
    if (parts.scheme, parts.netloc) != (ours.scheme, ours.netloc):
        return None
    segments = parts.path.removeprefix(ours.path.rstrip("/")).strip("/").split("/")
    if len(segments) in (2, 3) and segments[0] == "b" and segments[1] and segments[2:] in ([], ["embed"]):
        return segments[1]
    return None


def oembed_url(page_url: str) -> str:
    """The oEmbed endpoint's URL for a share page (for the page's discovery ``<link>``)."""
    return f"{_base_url()}/oembed?url={quote(page_url, safe='')}&format=json"


def oembed(generation: Generation, maxwidth: int | None = None, maxheight: int | None = None) -> dict:
    """The oEmbed 1.0 ``rich`` answer for a buddy: an iframe of its transparent embed page."""
    size = min([OEMBED_SIZE, *(limit for limit in (maxwidth, maxheight) if limit and limit > 0)])
    page = share_url(generation)
    title = buddy_title(generation)
    iframe = (
        f'<iframe src="{escape(page, quote=True)}/embed" width="{size}" height="{size}" '
        f'title="{escape(title, quote=True)}" loading="lazy" allowtransparency="true" '
        'style="border:0;background:transparent;color-scheme:normal"></iframe>'
    )
    answer = {
        "version": "1.0",
        "type": "rich",
        "provider_name": PROVIDER_NAME,
        "provider_url": _base_url() + "/",
        "title": title,
        "html": iframe,
        "width": size,
        "height": size,
    }
    poster = asset_urls(generation).get("poster")
    if poster:
        # The poster is the buddy's first frame at the animation's size (512 px square).
        answer.update(thumbnail_url=poster, thumbnail_width=512, thumbnail_height=512)
    return answer
