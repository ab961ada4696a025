"""``/b/{slug}``: the public share page of a buddy (the QR code target) and its files.

No auth: anyone with the slug may watch. The page plays the WebM (VP9 with alpha) over a
patterned background; browsers that cannot show VP9 transparency (Safari draws the alpha
black) get the animated WebP, or the GIF where WebP is missing.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlmodel import Session, select

from api.assets import PUBLIC_CACHE_CONTROL, stream_asset
from api.security_headers import inline_scripts, page_csp
from api.deps import SessionDep
from api.presenters import asset_urls
from include.generations import share_url
from include.models import Generation

router = APIRouter(
    prefix="/b",
    tags=["share"],
    responses={404: {"description": "No such published buddy"}, 410: {"description": "Its owner deleted this buddy"}},
)


def _by_slug(session: Session, slug: str) -> Generation | None:
    return session.exec(select(Generation).where(Generation.slug == slug)).first()


def _published(session: Session, slug: str) -> Generation | None:
    generation = _by_slug(session, slug)
    if generation is None or generation.status != "succeeded" or generation.deleted_at is not None:
        return None
    return generation


@router.get("/{slug}", response_class=HTMLResponse)
def share_page(session: SessionDep, slug: str) -> HTMLResponse:
    generation = _published(session, slug)
    if generation is None:
        gone = (found := _by_slug(session, slug)) is not None and found.deleted_at is not None
        # 410: the buddy existed and its owner deleted it (a sticker's QR code lands here for good).
        if gone:
            return HTMLResponse(GONE_PAGE, status_code=status.HTTP_410_GONE)
        return HTMLResponse(NOT_FOUND_PAGE, status_code=status.HTTP_404_NOT_FOUND)
    return HTMLResponse(
        render_share_page(generation),
        headers={"Cache-Control": "public, max-age=300", "Content-Security-Policy": SHARE_PAGE_CSP},
    )


@router.get("/{slug}/{name}", response_class=StreamingResponse)
def public_asset(session: SessionDep, slug: str, name: str) -> StreamingResponse:
    generation = _published(session, slug)
    if generation is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Buddy not found.")
    return stream_asset(generation, name, cache_control=PUBLIC_CACHE_CONTROL)


def render_share_page(generation: Generation) -> str:
    urls = {kind: escape(url, quote=True) for kind, url in asset_urls(generation).items()}
    page_url = escape(share_url(generation), quote=True)
    # The prompt is private; the page shows only a title its owner chose to publish.
    title = escape(f"A Bit Buddy: {generation.share_title}" if generation.share_title else "A Bit Buddy", quote=True)
    webm, webp, gif, poster = (urls.get(k, "") for k in ("webm", "webp", "gif", "poster"))
    fallback_img = f'<img class="buddy" src="{webp or gif or poster}" alt="{title}">'
    if webp and gif:
        fallback_img = (
            f'<picture><source srcset="{webp}" type="image/webp">'
            f'<img class="buddy" src="{gif}" alt="{title}"></picture>'
        )
    og_image = f'<meta property="og:image" content="{poster}">' if poster else ""
    return SHARE_PAGE.format(
        title=title,
        page_url=page_url,
        og_image=og_image,
        webm=webm,
        poster=poster,
        fallback_img=fallback_img,
    )


SHARE_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta name="robots" content="noindex">
<meta property="og:type" content="website">
<meta property="og:title" content="{title}">
<meta property="og:url" content="{page_url}">
{og_image}
<meta name="twitter:card" content="summary_large_image">
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
</style>
</head>
<body>
<main class="stage" id="stage">
  <video class="buddy" id="buddy-video" autoplay loop muted playsinline poster="{poster}">
    <source src="{webm}" type="video/webm">
    {fallback_img}
  </video>
</main>
<template id="buddy-fallback">{fallback_img}</template>
<footer>Made with BitBuddies</footer>
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
</script>
</body>
</html>
"""

NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>Buddy not found</title></head>
<body style="font-family: system-ui, sans-serif; text-align: center; padding: 4rem;">
<h1>Buddy not found</h1><p>This buddy does not exist or is not ready yet. Try again in a minute.</p>
</body></html>
"""

GONE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>Buddy deleted</title></head>
<body style="font-family: system-ui, sans-serif; text-align: center; padding: 4rem;">
<h1>This buddy is gone</h1><p>Its owner deleted it.</p>
</body></html>
"""

# The page's one inline script (the WebKit fallback) is allowed by its hash, nothing else inline.
SHARE_PAGE_CSP = page_csp(inline_scripts=inline_scripts(SHARE_PAGE.replace("{{", "{").replace("}}", "}")))
