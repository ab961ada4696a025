"""The embedding endpoints: the widget script (``/embed.js``), oEmbed (``/oembed``) and the Chrome
extension's package (``/extension.zip``). All public."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response

from api.assets import CROSS_ORIGIN_HEADERS
from api.deps import SessionDep
from api.embedding import EMBED_JS, oembed, slug_from_share_url
from api.extension import extension_zip
from api.routes.share import published_buddy

router = APIRouter(tags=["embedding"])

# embed.js has one URL for every site that pastes the snippet: cached for a while, revalidated.
EMBED_JS_CACHE_CONTROL = "public, max-age=3600"


@router.get("/embed.js", response_class=Response)
def embed_js(request: Request) -> Response:
    """The widget: ``<script src=".../embed.js" data-buddy="SLUG" async>`` or ``<bit-buddy slug>``."""
    body = EMBED_JS.read_bytes()
    etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
    headers = {**CROSS_ORIGIN_HEADERS, "Cache-Control": EMBED_JS_CACHE_CONTROL, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get("/oembed")
def oembed_endpoint(
    session: SessionDep,
    url: Annotated[str, Query(description="A buddy's share page URL, /b/{slug}")],
    format: Annotated[str, Query(description="Only json is offered")] = "json",  # noqa: A002 (oEmbed's name)
    maxwidth: Annotated[int | None, Query(ge=1)] = None,
    maxheight: Annotated[int | None, Query(ge=1)] = None,
) -> JSONResponse:
    """oEmbed 1.0: a ``rich`` answer whose ``html`` frames the buddy's transparent embed page."""
    if format != "json":
        raise HTTPException(status_code=status.HTTP_501_NOT_IMPLEMENTED, detail="Only format=json is offered.")
    slug = slug_from_share_url(url)
    generation = published_buddy(session, slug) if slug else None
    if generation is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="No buddy at that URL.")
    return JSONResponse(
        oembed(generation, maxwidth, maxheight),
        headers={**CROSS_ORIGIN_HEADERS, "Cache-Control": "public, max-age=300"},
    )


@router.get("/extension.zip", response_class=Response)
def extension_package() -> Response:
    """The Chrome extension, to load unpacked (steps in the README and the popup)."""
    return Response(
        extension_zip(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="bitbuddies-extension.zip"', "Cache-Control": "no-cache"},
    )
