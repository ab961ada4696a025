"""``/b/{slug}``: the public share page of a buddy (the QR code target), its transparent
frameable variant (``/b/{slug}/embed``), the widget's buddy info (``/b/{slug}/buddy.json``) and
its files.

No auth: anyone with the slug may watch. The pages play the WebM (VP9 with alpha); browsers that
cannot show VP9 transparency (Safari draws the alpha black) get the animated WebP, or the GIF
where WebP is missing. The share page has a patterned background, the embed page none.
An unknown, unfinished (or deleted) buddy is a 404 everywhere, which makes a widget remove itself.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session, select

from api.assets import CROSS_ORIGIN_HEADERS, stream_asset
from api.deps import SessionDep
from api.embedding import buddy_info, buddy_title, embed_snippet, oembed_url
from api.presenters import asset_urls
from include.generations import share_url
from include.models import Generation

router = APIRouter(prefix="/b", tags=["share"])


def published_buddy(session: Session, slug: str) -> Generation | None:
    generation = session.exec(select(Generation).where(Generation.slug == slug)).first()
    if generation is None or generation.status != "succeeded":
        return None
    return generation


@router.get("/{slug}", response_class=HTMLResponse)
def share_page(session: SessionDep, slug: str) -> HTMLResponse:
    generation = published_buddy(session, slug)
    if generation is None:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=status.HTTP_404_NOT_FOUND)
    return HTMLResponse(render_share_page(generation), headers={"Cache-Control": "public, max-age=300"})


# Short: a deleted buddy's info must stop being served soon.
BUDDY_INFO_CACHE_CONTROL = "public, max-age=60"


@router.get("/{slug}/buddy.json")
def buddy_json(session: SessionDep, slug: str) -> JSONResponse:
    """The widget's view of a published buddy: title, share and embed URLs, versioned asset URLs.
    Readable from any site (CORS ``*``, never with cookies); 404 for unknown or unpublished ones."""
    headers = {**CROSS_ORIGIN_HEADERS, "Cache-Control": BUDDY_INFO_CACHE_CONTROL}
    generation = published_buddy(session, slug)
    if generation is None:
        return JSONResponse({"detail": "Buddy not found."}, status_code=status.HTTP_404_NOT_FOUND, headers=headers)
    return JSONResponse(buddy_info(generation), headers=headers)


@router.get("/{slug}/embed", response_class=HTMLResponse)
def embed_page(session: SessionDep, slug: str) -> HTMLResponse:
    """The buddy alone on a transparent page, for iframes on any site (the oEmbed ``html``)."""
    generation = published_buddy(session, slug)
    if generation is None:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=status.HTTP_404_NOT_FOUND)
    # Frameable by any site: no X-Frame-Options, and CSP frame-ancestors says so explicitly.
    headers = {"Cache-Control": "public, max-age=300", "Content-Security-Policy": "frame-ancestors *"}
    return HTMLResponse(render_embed_page(generation), headers=headers)


@router.get("/{slug}/{name}", response_class=Response)
def public_asset(request: Request, session: SessionDep, slug: str, name: str) -> Response:
    generation = published_buddy(session, slug)
    if generation is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Buddy not found.")
    return stream_asset(request, generation, name)


def _player(generation: Generation) -> dict[str, str]:
    """The escaped pieces both pages play the buddy with (``PLAYER`` and its fallback)."""
    urls = {kind: escape(url, quote=True) for kind, url in asset_urls(generation).items()}
    title = escape(buddy_title(generation), quote=True)
    webm, webp, gif, poster = (urls.get(k, "") for k in ("webm", "webp", "gif", "poster"))
    fallback_img = f'<img class="buddy" src="{webp or gif or poster}" alt="{title}">'
    if webp and gif:
        fallback_img = (
            f'<picture><source srcset="{webp}" type="image/webp">'
            f'<img class="buddy" src="{gif}" alt="{title}"></picture>'
        )
    player = PLAYER.format(webm=webm, poster=poster, fallback_img=fallback_img)
    return {"title": title, "poster": poster, "player": player}


def render_share_page(generation: Generation) -> str:
    parts = _player(generation)
    page_url = share_url(generation)
    og_image = f'<meta property="og:image" content="{parts["poster"]}">' if parts["poster"] else ""
    return SHARE_PAGE.format(
        page_url=escape(page_url, quote=True),
        og_image=og_image,
        oembed_url=escape(oembed_url(page_url), quote=True),
        snippet=escape(embed_snippet(generation.slug)),
        **parts,
    )


def render_embed_page(generation: Generation) -> str:
    return EMBED_PAGE.format(**_player(generation))


# The video, its image fallback, and the script that picks between them.
PLAYER = """<video class="buddy" id="buddy-video" autoplay loop muted playsinline poster="{poster}">
  <source src="{webm}" type="video/webm">
  {fallback_img}
</video>
<template id="buddy-fallback">{fallback_img}</template>
<script>
  // Safari (and every iOS browser, all WebKit) plays VP9 but draws its alpha channel black;
  // browsers without VP9 cannot play the WebM at all. Both get the animated image instead.
  (function () {{
    var video = document.getElementById("buddy-video");
    var ua = navigator.userAgent;
    var webkitOnly = /AppleWebKit/.test(ua) && !/Chrome|Chromium|Edg|Firefox|OPR/.test(ua);
    var vp9 = video.canPlayType && video.canPlayType('video/webm; codecs="vp9"');
    if (webkitOnly || /iPhone|iPad|iPod/.test(ua) || !vp9) {{
      var fallback = document.getElementById("buddy-fallback").content.cloneNode(true);
      video.replaceWith(fallback);
    }}
  }})();
</script>"""


SHARE_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta property="og:type" content="website">
<meta property="og:title" content="{title}">
<meta property="og:url" content="{page_url}">
{og_image}
<meta name="twitter:card" content="summary_large_image">
<link rel="alternate" type="application/json+oembed" href="{oembed_url}" title="{title}">
<style>
  html, body {{ margin: 0; height: 100%; }}
  body {{
    display: flex; flex-direction: column; align-items: center; justify-content: center;
    font-family: system-ui, sans-serif; color: #3b2a5c;
    background-color: #ffe9f3;
    background-image:
      radial-gradient(circle at 20px 20px, rgba(255, 255, 255, .7) 6px, transparent 7px),
      linear-gradient(135deg, #ffd6e8 0%, #d9e8ff 50%, #dcffe9 100%);
    background-size: 40px 40px, 100% 100%;
  }}
  .stage {{ width: min(90vw, 512px); aspect-ratio: 1; display: flex; align-items: center; justify-content: center; }}
  .buddy, .stage video, .stage picture {{ max-width: 100%; max-height: 100%; }}
  footer {{ margin-top: 1rem; font-size: .9rem; opacity: .8; }}
  .embed {{ margin-top: 1.5rem; width: min(90vw, 640px); }}
  .embed label {{ display: block; font-weight: 600; margin-bottom: .3rem; }}
  .embed textarea {{ box-sizing: border-box; width: 100%; font: .85rem ui-monospace, monospace; padding: .5rem;
    border: 1px solid #b9a6d9; border-radius: .4rem; background: rgba(255, 255, 255, .85); color: inherit; resize: none; }}
  .embed button {{ margin-top: .4rem; padding: .35rem .9rem; border: 0; border-radius: .4rem; background: #5b3fa0;
    color: #fff; font: inherit; cursor: pointer; }}
</style>
</head>
<body>
<main class="stage" id="stage">
{player}
</main>
<section class="embed">
  <label for="embed-snippet">Put this buddy on your site</label>
  <textarea id="embed-snippet" rows="2" readonly>{snippet}</textarea>
  <button type="button" id="copy-snippet">Copy embed code</button> <span id="copy-status" role="status"></span>
</section>
<footer>Made with BitBuddies</footer>
<script>
  (function () {{
    var field = document.getElementById("embed-snippet");
    var said = document.getElementById("copy-status");
    document.getElementById("copy-snippet").addEventListener("click", function () {{
      field.select();
      var done = function () {{ said.textContent = "Copied"; }};
      if (navigator.clipboard && window.isSecureContext) {{
        navigator.clipboard.writeText(field.value).then(done, function () {{ document.execCommand("copy"); done(); }});
      }} else {{
        document.execCommand("copy");
        done();
      }}
    }});
  }})();
</script>
</body>
</html>
"""

EMBED_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  html, body {{ margin: 0; height: 100%; background: transparent; overflow: hidden; }}
  body {{ display: flex; align-items: center; justify-content: center; }}
  .buddy, picture {{ max-width: 100%; max-height: 100%; }}
</style>
</head>
<body>
{player}
</body>
</html>
"""

NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Buddy not found</title></head>
<body style="font-family: system-ui, sans-serif; text-align: center; padding: 4rem;">
<h1>Buddy not found</h1><p>This buddy does not exist or is not ready yet. Try again in a minute.</p>
</body></html>
"""
