"""Security headers on every answer (a pure ASGI middleware), and the pages' Content-Security-Policy.

- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin`` everywhere: no MIME
  sniffing of assets, and no page URL (a share slug, a generation id) leaks to other sites;
- HTML gets a CSP that allows only this origin's scripts, styles inline (the pages' own) and
  media, and may not be framed (``frame-ancestors 'none'``, ``X-Frame-Options: DENY``), except
  ``/b/{slug}/embed``, which other sites embed (``frame-ancestors *``); a route that sets its own
  CSP keeps it (the share page allows its one inline script by hash); ``/docs`` loads Swagger UI
  from its CDN;
- the public pages (``/b/...``, ``/g/...``) answer ``X-Robots-Tag: noindex``: a buddy is shared by
  link, never found by a search engine.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def inline_scripts(html: str) -> list[str]:
    """The bodies of the inline ``<script>`` elements of a page template."""
    return _SCRIPT.findall(html)


def page_csp(*, frame_ancestors: str = "'none'", inline_scripts: list[str] = ()) -> str:
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline_scripts)
    return (
        "default-src 'self'; "
        f"script-src 'self'{hashes}; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors}"
    )


PAGE_CSP = page_csp()
EMBED_CSP = page_csp(frame_ancestors="*")
# FastAPI's Swagger UI and ReDoc pages load their code from jsDelivr and start it inline.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "frame-ancestors 'none'"
)
_EMBED_PATH = re.compile(r"^/b/[^/]+/embed$")


def _csp_for(path: str) -> str:
    if path in ("/docs", "/redoc") or path.startswith("/docs/"):
        return DOCS_CSP
    return EMBED_CSP if _EMBED_PATH.match(path) else PAGE_CSP


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
                content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    embed = bool(_EMBED_PATH.match(path))
                    if b"content-security-policy" not in names:
                        extra.append((b"content-security-policy", _csp_for(path).encode()))
                    if not embed:
                        extra.append((b"x-frame-options", b"DENY"))
                if path.startswith(("/b/", "/g/")):
                    extra.append((b"x-robots-tag", b"noindex"))
                message = {**message, "headers": headers + [h for h in extra if h[0] not in names]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
